"""Stopping the daemon mid-job, and losing the message mid-job (real processes)."""

from __future__ import annotations

import signal
import time

from tests.support import World, start_worker, wait_for_event


def test_sigterm_during_transcode_hands_the_job_back(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    proc = start_worker(world, TRANSCODE_PRESET="slower")
    try:
        wait_for_event(proc, "transcode_ffmpeg_started")
        time.sleep(1)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - stopped_at
    finally:
        proc.kill()

    assert proc.returncode == 0, err
    assert took < 10
    job = world.job(upload.job_id)
    assert job["state"] == "queued" and job["error_code"] is None
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"]) == ("uploaded", "uploaded")
    assert world.queue_counts() == (1, 0)  # visible again at once for the next worker
    assert world.work_dir_empty()
    assert "transcode_job_released" in out
    assert world.keys(upload.prefix + "streaming/index.m3u8") == []


def test_message_taken_by_another_consumer_stops_the_job(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    proc = start_worker(
        world, "--once", TRANSCODE_PRESET="slower",
        HEARTBEAT_INTERVAL_SECONDS="1", HEARTBEAT_EXTENSION_SECONDS="3",
    )  # fmt: skip
    try:
        wait_for_event(proc, "transcode_ffmpeg_started")
        # The message disappears under the worker (as when another consumer
        # received and deleted it): the worker's receipt handle turns invalid.
        world.sqs.purge_queue(QueueUrl=world.queue_url)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == 0, err
    assert "transcode_heartbeat_lost" in out and "transcode_job_lost" in out
    assert world.job(upload.job_id)["state"] == "running"  # left to the new owner
    assert world.work_dir_empty()
    assert world.keys(upload.prefix + "streaming/index.m3u8") == []


def test_segments_go_up_while_ffmpeg_is_still_encoding(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    proc = start_worker(world, "--once", TRANSCODE_PRESET="slower")
    try:
        wait_for_event(proc, "transcode_ffmpeg_started")
        deadline = time.monotonic() + 240
        early = []
        while time.monotonic() < deadline and not early:
            stage = world.asset(upload.media_id)["processing_stage"]
            keys = world.keys(upload.prefix + "streaming/")
            if stage == "transcoding" and any(k.endswith("_00000.ts") for k in keys):
                early = keys
            time.sleep(0.5)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert early, "no segment reached storage before the transcode ended"
    assert not any(k.endswith("index.m3u8") for k in early)  # not announced yet
    assert world.job(upload.job_id)["state"] == "succeeded"
