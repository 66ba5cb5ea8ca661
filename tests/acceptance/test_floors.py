"""Both workers on exactly the lowest versions requirements.txt allows
(requirements-floors.txt, installed into .venv-floors by scripts/bootstrap.sh):
what an old Jetson runs, since pip keeps a package that meets the floor."""

from __future__ import annotations

import subprocess
import threading
import uuid

import pytest

from devstack.fault_proxy import FaultProxy
from tests.support import ROOT, WORKER, World, axiom_server, events, require

FLOOR_PYTHON = ROOT / ".venv-floors" / "bin" / "python"
CLEANER = ROOT / "cleanup" / "cleanup_worker.py"


@pytest.fixture
def floor_python() -> str:
    require(FLOOR_PYTHON.exists(), ".venv-floors is missing (scripts/bootstrap.sh makes it)")
    found = subprocess.run(
        [str(FLOOR_PYTHON), "-c", "import boto3, botocore, s3transfer, axiom_py;"
         "print(boto3.__version__, botocore.__version__, s3transfer.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert found == ["1.34.0", "1.34.0", "0.9.0"]
    return str(FLOOR_PYTHON)


def _run(world: World, python: str, script, *args: str, **env: str):
    return subprocess.run(
        [python, str(script), *args], env={**world.base_env(), **world.env, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_transcode_with_axiom_on_runs_on_the_floors(
    world: World, media, floor_python: str
) -> None:
    server, axiom = axiom_server(threading.Event())
    axiom.hold.set()
    upload = world.upload(media.h264(320, 180, 2))
    try:
        run = _run(world, floor_python, WORKER, "--once", AXIOM_API_TOKEN="xaat-floor-test",
                   AXIOM_URL=f"http://127.0.0.1:{server.server_address[1]}")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stderr[-2000:]
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert world.asset(upload.media_id)["streaming_ready"] is True
    assert any(e["event_type"] == "transcode_job_succeeded" for e in axiom.received)
    assert not [e for e in events(run.stdout) if e["severity"] in ("warning", "error")]


def test_a_cleanup_dry_run_and_the_checks_run_on_the_floors(
    world: World, floor_python: str
) -> None:
    org, media_id = str(uuid.uuid4()), str(uuid.uuid4())
    key = f"orgs/{org}/uploads/{media_id}/raw/a.mp4"
    world.s3.put_object(Bucket="rugbycodex-media", Key=key, Body=b"x")
    world.sql("INSERT INTO media_cleanup_jobs (media_asset_id, bucket, storage_path)"
              " VALUES (%s, 'rugbycodex-media', %s)", media_id, key)  # fmt: skip

    run = _run(world, floor_python, CLEANER, "--dry-run")

    assert run.returncode == 0, run.stderr[-2000:]
    planned = [e for e in events(run.stdout) if e["event_type"] == "cleanup_dry_run_row"]
    assert planned and planned[0]["objects_to_delete"] == 1
    assert _run(world, floor_python, WORKER, "--check").returncode == 0
    assert _run(world, floor_python, CLEANER, "--check").returncode == 0


WIRE = """
import os, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from utils.storage import MiB, Storage, StoredObject, Upload
storage = Storage(sys.argv[1], "us-east-1", "k", "s", multipart_threshold=5 * MiB,
                  part_size=5 * MiB)
big = Path(sys.argv[3])
big.write_bytes(os.urandom(11 * MiB))
storage.upload("rugbycodex-media", [Upload(big, "floor/big.ts", "video/mp2t", "public")])
storage.delete_objects("rugbycodex-media", [StoredObject("floor/big.ts")])
"""


def test_the_floors_send_what_wasabi_accepts(world: World, floor_python: str, tmp_path) -> None:
    proxy = FaultProxy(world.stack.moto.port)
    try:
        run = subprocess.run([floor_python, "-c", WIRE, proxy.url, str(ROOT),
                              str(tmp_path / "big.ts")], capture_output=True, text=True,
                             env={**world.base_env(), **world.env}, timeout=120)  # fmt: skip
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr[-2000:]
    puts = [h for method, _, h in proxy.headers if method == "PUT"]
    assert len(puts) == 3
    assert not [h for h in puts if any(k.lower().startswith("x-amz-checksum") for k in h)]
    deletes = [h for method, path, h in proxy.headers if method == "POST" and "delete" in path]
    assert len(deletes) == 1 and "content-md5" in {k.lower() for k in deletes[0]}
