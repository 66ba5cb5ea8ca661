"""`--check`: what an operator runs before `systemctl start` — a short
table, and an exit code naming what is broken, touching no job or message."""

from __future__ import annotations

import re
import subprocess
import sys

from devstack.stack import free_port
from tests.support import ROOT, WORKER, World

CLEANER = ROOT / "cleanup" / "cleanup_worker.py"


def _check(world: World, script, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), "--check"],
        env={**world.base_env(), **world.env, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _status(run: subprocess.CompletedProcess, name: str) -> str:
    found = re.search(rf"^{name}\s+(ok|BROKEN)\s", run.stdout, re.MULTILINE)
    return found.group(1) if found else "missing"


def test_a_healthy_transcoder_passes_and_no_message_is_touched(world: World) -> None:
    world.send({"job_id": "x"})  # waiting in the queue: --check must leave it alone

    run = _check(world, WORKER)

    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("config", "supabase", "sqs", "wasabi", "ffmpeg", "work dir"):
        assert _status(run, name) == "ok", run.stdout
    assert "1 waiting" in run.stdout
    wanted = ["ApproximateReceiveCount"]
    answer = world.sqs.receive_message(QueueUrl=world.queue_url, AttributeNames=wanted)
    assert answer["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert world.env["WASABI_SECRET"] not in run.stdout + run.stderr


def test_broken_parts_are_named_and_the_exit_code_says_so(world: World, tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")

    run = _check(world, WORKER, AWS_ENDPOINT_URL_SQS=dead, TRANSCODE_WORK_DIR=str(blocked / "w"),
                 FFMPEG_BIN="ffmpeg-that-is-not-installed")  # fmt: skip

    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == "broken: sqs, ffmpeg, work dir"
    assert (
        "supabase  ok" in run.stdout.replace("supabase ", "supabase  ", 1)
        or "supabase" in run.stdout
    )


def test_the_cleanup_worker_checks_its_own_services(world: World) -> None:
    assert _check(world, CLEANER).returncode == 0
    run = _check(world, CLEANER, WASABI_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1 and run.stderr.strip().endswith("broken: wasabi")


def test_a_bad_setting_is_named_before_anything_is_reached(world: World) -> None:
    run = _check(world, WORKER, HLS_SEGMENT_SECONDS="often")
    assert run.returncode == 78 and "HLS_SEGMENT_SECONDS" in run.stderr
