"""Long fault and load tests (marker `slow`; `.ci/run` runs them too).

SIGKILL of the transcoder in each stage, then another worker finishes the
job; two and three workers sharing one queue with duplicate messages.
"""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from devstack.fault_proxy import FaultProxy
from tests.support import (
    World,
    check_final_output,
    read_until,
    scaled,
    start_worker,
    start_worker_logging_to,
    stop_all,
    wait_for,
)

pytestmark = pytest.mark.slow

STAGES = {
    "download": [("transcode_stage_started", "download")],
    "transcode": [("transcode_ffmpeg_started", None)],
    "upload": [("transcode_stage_started", "upload")],
    "db_update": [("transcode_stage_finished", "upload")],
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_sigkill_in_any_stage_and_another_worker_finishes(
    world: World, media, tmp_path, stage: str
) -> None:
    upload = world.upload(media.h264(1280, 720, 12))
    proxy = FaultProxy(world.stack.moto.port)  # slow transfers, so a kill lands inside them
    proxy.add("delay", count=10_000, method="GET", path_contains="/raw/", seconds=2.5)
    proxy.add("delay", count=10_000, method="PUT", seconds=0.4)
    first = start_worker(world, WASABI_ENDPOINT=proxy.url, **scaled(world))
    try:
        read_until(first, list(STAGES[stage]))
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        first.kill()
        proxy.close()
    second = start_worker(world, **scaled(world))
    try:
        wait_for(lambda: world.job(upload.job_id)["state"] == "succeeded", what="success")
        wait_for(lambda: world.queue_counts() == (0, 0), timeout=60, what="an empty queue")
    except AssertionError:
        out = stop_all([second])[0]
        kinds = [json.loads(x)["event_type"] for x in out.splitlines() if x[:1] == "{"]
        raise AssertionError(f"{world.job(upload.job_id)}\n{kinds[-30:]}") from None
    finally:
        stop_all([second])
    job = world.job(upload.job_id)
    assert job["attempt"] in (2, 3) and job["error_code"] is None
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"], asset["streaming_ready"]) == (
        "ready", "complete", True,
    )  # fmt: skip
    check_final_output(world, upload, tmp_path)
    assert world.work_dir_empty()


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_sharing_a_queue_transcode_each_job_exactly_once(
    world: World, media, tmp_path, workers: int
) -> None:
    clip = media.h264(320, 180, 2)
    uploads = [world.upload(clip) for _ in range(12)]
    for upload in uploads[:4]:  # the upload-completion function sent these twice
        world.send(upload.message())
    env = {**scaled(world), "VERBOSE_LOGGING": "false"}
    logs = [tmp_path / f"worker{i}.log" for i in range(workers)]
    procs = [start_worker_logging_to(world, log, **env) for log in logs]
    try:
        wait_for(
            lambda: all(world.job(u.job_id)["state"] == "succeeded" for u in uploads),
            what="every job to succeed",
        )
        wait_for(lambda: world.queue_counts() == (0, 0), timeout=120, what="an empty queue")
    finally:
        stop_all(procs)
    lines = [line for path in logs for line in path.read_text().splitlines()]
    log = [json.loads(line) for line in lines if line[:1] == "{"]
    started = Counter(e["job_id"] for e in log if e["event_type"] == "transcode_ffmpeg_started")
    succeeded = Counter(e["job_id"] for e in log if e["event_type"] == "transcode_job_succeeded")
    assert set(started) == {u.job_id for u in uploads}
    assert sum(started.values()) == 12  # one FFmpeg run per job, duplicates included
    assert set(succeeded.values()) == {1}
    for upload in uploads:
        assert world.job(upload.job_id)["attempt"] == 2
