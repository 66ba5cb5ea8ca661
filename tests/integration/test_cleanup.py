"""The cleanup worker against the real stack (moto server, PostgreSQL + gateway)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cleanup.cleanup_pass import Cleaner
from devstack.fault_proxy import FaultProxy
from devstack.stack import free_port
from tests.support import BUCKET, ROOT, World, events
from utils.config import load_cleanup_settings
from utils.observability import EventLog
from utils.storage import Storage
from utils.supabase_db import Database

CLEANER = ROOT / "cleanup" / "cleanup_worker.py"


def put_many(world: World, keys: list[str], bucket: str = BUCKET) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: world.s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


def add_row(world: World, media_id: str, storage_path: Any, bucket: Any = BUCKET) -> str:
    row_id = str(uuid.uuid4())
    world.sql(
        "INSERT INTO media_cleanup_jobs (id, media_asset_id, bucket, storage_path)"
        " VALUES (%s, %s, %s, %s)",
        row_id, media_id, bucket, storage_path,
    )  # fmt: skip
    return row_id


def row(world: World, row_id: str) -> dict[str, Any]:
    return world.sql("SELECT * FROM media_cleanup_jobs WHERE id = %s", row_id)[0]


def run_cleaner(world: World, *args: str, cwd: Any = None, **env: str):
    return subprocess.run(
        [sys.executable, str(CLEANER), *args],
        env={**world.base_env(), **world.env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def cleaner(world: World, stop: threading.Event | None = None, **env: str) -> Cleaner:
    settings = load_cleanup_settings({**world.env, **env})
    log = EventLog("cleanup", environment="test", worker="t", stream=io.StringIO())
    return Cleaner(
        settings,
        Database(settings.common.supabase_url, settings.common.supabase_key),
        Storage.from_settings(settings.common),
        log,
        stop or threading.Event(),
    )


def folder(org: str, media: str) -> str:
    return f"orgs/{org}/uploads/{media}/"


def test_big_folder_goes_completely_and_nothing_beside_it(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    target = folder(org, media)
    put_many(world, [f"{target}streaming/720p_{i:05d}.ts" for i in range(2497)])
    put_many(world, [f"{target}raw/match.mp4", f"{target}streaming/index.m3u8",
                     f"{target}streaming/thumbnails/poster.jpg"])  # fmt: skip
    neighbours = [
        f"{folder(org, str(uuid.uuid4()))}raw/sibling.mp4",  # the same org's other video
        f"{folder(str(uuid.uuid4()), media)}raw/other-org.mp4",  # another org, same media id
        f"orgs/{org}/uploads/{media}-copy/raw/lookalike.mp4",  # same leading characters
        f"orgs/{org}/uploads/{media}",  # a key equal to the folder name without '/'
    ]
    put_many(world, neighbours)
    row_id = add_row(world, media, f"{target}raw/match.mp4")

    run = run_cleaner(world, "--once")

    assert run.returncode == 0, run.stderr
    assert world.keys(target) == []
    assert sorted(world.keys("orgs/")) == sorted(neighbours)
    done = row(world, row_id)
    assert done["processed_at"] is not None and done["error"] is None
    summary = [e for e in events(run.stdout) if e["event_type"] == "cleanup_pass_finished"]
    assert summary[0]["objects_deleted"] == 2500 and summary[0]["rows_done"] == 1


def test_requests_are_one_list_and_one_delete_per_thousand(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}streaming/s_{i:05d}.ts" for i in range(2500)])
    add_row(world, media, f"{folder(org, media)}raw/m.mp4")
    work = cleaner(world)
    calls: list[str] = []
    work.storage.client.meta.events.register(
        "before-call.s3", lambda model, **kw: calls.append(model.name)
    )

    summary = work.run_pass()

    assert summary.objects_deleted == 2500
    assert calls.count("ListObjectsV2") == 3 and calls.count("DeleteObjects") == 3
    assert calls.count("GetBucketVersioning") == 1 and len(calls) == 7
    again = str(uuid.uuid4())
    add_row(world, again, f"{folder(org, again)}raw/m.mp4")
    work.run_pass()  # versioning is asked again each pass (an operator may turn it on)
    assert calls.count("GetBucketVersioning") == 2


BAD_PATHS = [
    ("", "{media}"),
    (None, "{media}"),
    ("orgs/{org}/uploads", "{media}"),
    ("orgs/{org}/uploads/{media}/raw/../../{other}/raw/a.mp4", "{media}"),
    ("/orgs/{org}/uploads/{media}/raw/a.mp4", "{media}"),
    ("orgs/{org}/uploads/{other}/raw/a.mp4", "{media}"),
    ("orgs/{org}/uploads/{media}-copy/raw/a.mp4", "{media}"),
]


@pytest.mark.parametrize("path, media_field", BAD_PATHS)
def test_malformed_storage_path_deletes_nothing(world: World, path, media_field: str) -> None:
    org, media, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    keys = [f"{folder(org, media)}raw/a.mp4", f"{folder(org, other)}raw/a.mp4",
            f"orgs/{org}/uploads/{media}-copy/raw/a.mp4"]  # fmt: skip
    put_many(world, keys)
    storage_path = None if path is None else path.format(org=org, media=media, other=other)
    row_id = add_row(world, media_field.format(media=media), storage_path)

    run = run_cleaner(world, "--once")

    assert run.returncode == 1
    assert sorted(world.keys("orgs/")) == sorted(keys)
    refused = row(world, row_id)
    assert refused["processed_at"] is not None and refused["error"].startswith("refused:")
    assert any(e["event_type"] == "cleanup_row_refused" and e["severity"] == "error"
               for e in events(run.stdout))  # fmt: skip


def test_row_without_bucket_and_no_default_deletes_nothing(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4", bucket=None)

    run = run_cleaner(world, "--once", BUCKET_NAME="")

    assert run.returncode == 1
    assert world.keys(folder(org, media)) == [f"{folder(org, media)}raw/a.mp4"]
    waiting = row(world, row_id)
    assert "BUCKET_NAME" in waiting["error"]
    assert waiting["processed_at"] is None  # our configuration's fault: it waits for a fix
    assert any(e["event_type"] == "cleanup_row_retry" and e["severity"] == "error"
               for e in events(run.stdout))  # fmt: skip

    assert run_cleaner(world, "--once").returncode == 0  # BUCKET_NAME set again
    assert world.keys(folder(org, media)) == []
    assert row(world, row_id)["processed_at"] is not None


def test_a_row_of_another_bucket_waits_for_the_configuration(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4", bucket="another-bucket")

    run = run_cleaner(world, "--once")

    assert run.returncode == 1
    assert row(world, row_id)["processed_at"] is None
    assert "is not BUCKET_NAME" in row(world, row_id)["error"]


def test_an_odd_file_name_still_deletes_the_folder(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4", f"{folder(org, media)}streaming/x.ts"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/m\x01tch\\ 🏉.mp4")

    assert run_cleaner(world, "--once").returncode == 0

    assert world.keys(folder(org, media)) == []
    assert row(world, row_id)["processed_at"] is not None and row(world, row_id)["error"] is None


def test_access_denied_is_an_error_the_operator_sees(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")
    proxy = FaultProxy(world.stack.moto.port)
    proxy.add("status", 100, status=403, method="GET")
    try:
        run = run_cleaner(world, "--once", WASABI_ENDPOINT=proxy.url)
    finally:
        proxy.close()

    assert run.returncode == 1
    assert row(world, row_id)["processed_at"] is None
    errors = [e for e in events(run.stdout) if e["severity"] == "error"]
    assert errors and "access denied" in json.dumps(errors)


def test_partial_delete_failure_leaves_the_row_open_then_finishes(world: World) -> None:
    bucket = "rugbycodex-locked"
    world.s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    keys = [f"{folder(org, media)}streaming/s_{i}.ts" for i in range(5)]
    put_many(world, keys, bucket)
    held = keys[2]
    world.s3.put_object_legal_hold(Bucket=bucket, Key=held, LegalHold={"Status": "ON"})
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4", bucket=bucket)

    first = run_cleaner(world, "--once", BUCKET_NAME=bucket)

    assert first.returncode == 1
    open_row = row(world, row_id)
    assert open_row["processed_at"] is None
    assert open_row["error"].startswith("1 objects under") and "will retry" in open_row["error"]
    left = world.s3.list_object_versions(Bucket=bucket, Prefix=folder(org, media))
    assert [v["Key"] for v in left.get("Versions", [])] == [held]

    world.s3.put_object_legal_hold(Bucket=bucket, Key=held, LegalHold={"Status": "OFF"})
    second = run_cleaner(world, "--once", BUCKET_NAME=bucket)

    assert second.returncode == 0
    assert row(world, row_id)["processed_at"] is not None and row(world, row_id)["error"] is None
    after = world.s3.list_object_versions(Bucket=bucket, Prefix=folder(org, media))
    assert not after.get("Versions") and not after.get("DeleteMarkers")


def test_versioned_bucket_loses_old_versions_and_delete_markers(world: World) -> None:
    world.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    key = f"{folder(org, media)}streaming/index.m3u8"
    for body in (b"one", b"two"):
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    world.s3.delete_object(Bucket=BUCKET, Key=key)  # leaves a delete marker
    other = f"{folder(org, str(uuid.uuid4()))}raw/keep.mp4"
    world.s3.put_object(Bucket=BUCKET, Key=other, Body=b"keep")
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")

    assert run_cleaner(world, "--once").returncode == 0

    versions = world.s3.list_object_versions(Bucket=BUCKET, Prefix="orgs/")
    assert [v["Key"] for v in versions.get("Versions", [])] == [other]
    assert not versions.get("DeleteMarkers")
    assert row(world, row_id)["error"] is None


def test_dry_run_changes_nothing(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    keys = [f"{folder(org, media)}streaming/s_{i}.ts" for i in range(12)]
    put_many(world, keys)
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")
    bad_id = add_row(world, str(uuid.uuid4()), "../../etc")

    run = run_cleaner(world, "--dry-run")

    assert sorted(world.keys("orgs/")) == sorted(keys)
    assert row(world, row_id)["processed_at"] is None and row(world, row_id)["error"] is None
    assert row(world, bad_id)["processed_at"] is None
    planned = [e for e in events(run.stdout) if e["event_type"] == "cleanup_dry_run_row"]
    assert planned == [planned[0]] and planned[0]["objects_to_delete"] == 12
    assert planned[0]["prefix"] == folder(org, media)


def test_already_empty_folder_is_marked_done_and_a_second_pass_is_harmless(world: World) -> None:
    row_id = add_row(world, str(uuid.uuid4()), None)
    media = str(uuid.uuid4())
    empty_id = add_row(world, media, f"{folder(str(uuid.uuid4()), media)}raw/gone.mp4")

    assert run_cleaner(world, "--once").returncode == 1  # the None row is refused
    first = row(world, empty_id)
    assert first["processed_at"] is not None and first["error"] is None
    assert run_cleaner(world, "--once").returncode == 0  # nothing pending any more
    assert row(world, empty_id)["processed_at"] == first["processed_at"]
    assert row(world, row_id)["processed_at"] is not None


def test_two_cleaners_at_once_end_in_the_right_state(world: World) -> None:
    rows = []
    for _ in range(6):
        org, media = str(uuid.uuid4()), str(uuid.uuid4())
        put_many(world, [f"{folder(org, media)}streaming/s_{i}.ts" for i in range(150)])
        rows.append(add_row(world, media, f"{folder(org, media)}raw/a.mp4"))

    env = {**world.base_env(), **world.env}
    procs = [
        subprocess.Popen([sys.executable, str(CLEANER), "--once"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], results
    assert world.keys("orgs/") == []
    for row_id in rows:
        final = row(world, row_id)
        assert final["processed_at"] is not None and final["error"] is None


def test_supabase_down_leaves_the_daemon_alive(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")
    world.stack.gateway.fail_next(1000, 503)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(CLEANER)], env={**world.base_env(), **world.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(4)
        assert proc.poll() is None  # still running after a failed pass
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        world.stack.gateway.clear_faults()
    assert proc.returncode == 0
    assert any(e["event_type"] == "cleanup_pass_failed" for e in events(out))
    assert row(world, row_id)["processed_at"] is None
    assert world.keys(folder(org, media)) == [f"{folder(org, media)}raw/a.mp4"]


def test_storage_down_leaves_rows_unprocessed(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}raw/a.mp4"])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")

    run = run_cleaner(world, "--once", WASABI_ENDPOINT=f"http://127.0.0.1:{free_port()}")

    assert run.returncode == 1
    assert row(world, row_id)["processed_at"] is None
    assert world.keys(folder(org, media)) == [f"{folder(org, media)}raw/a.mp4"]


def test_sigterm_during_the_sleep_exits_promptly(world: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(CLEANER)], env={**world.base_env(), **world.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "cleanup",
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"cleanup_pass_finished"' in line:
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert time.monotonic() - started < 2


def test_stop_between_batches_keeps_the_row_open(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}s_{i:05d}" for i in range(1500)])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")
    stop = threading.Event()
    work = cleaner(world, stop)
    work.storage.client.meta.events.register("after-call.s3.DeleteObjects", lambda **kw: stop.set())

    summary = work.run_pass()

    assert summary.stopped and summary.objects_deleted == 1000
    assert len(world.keys(folder(org, media))) == 500
    assert row(world, row_id)["processed_at"] is None


def test_supabase_down_between_delete_and_mark_is_finished_next_pass(world: World) -> None:
    org, media = str(uuid.uuid4()), str(uuid.uuid4())
    put_many(world, [f"{folder(org, media)}streaming/s_{i}.ts" for i in range(30)])
    row_id = add_row(world, media, f"{folder(org, media)}raw/a.mp4")
    world.stack.gateway.fail_matching("PATCH", '"processed_at"', count=1000)

    first = run_cleaner(world, "--once")

    world.stack.gateway.clear_faults()
    assert first.returncode == 1
    assert world.keys(folder(org, media)) == []  # deleted …
    assert row(world, row_id)["processed_at"] is None  # … but not yet marked

    second = run_cleaner(world, "--once")

    assert second.returncode == 0
    assert row(world, row_id)["processed_at"] is not None and row(world, row_id)["error"] is None
