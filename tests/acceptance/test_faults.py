"""Faults of the world around the transcoder, injected into the real stack.

Storage and SQS are reached through `devstack/fault_proxy.py` (a loopback HTTP
proxy that drops, delays, cuts or fails requests); Supabase faults come from
the gateway's own fault rules; FFmpeg is really stopped; the disk is really
small; the clock really jumps (faketime). Every case checks that nothing is
marked done that is not done, and that the worker lives on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.clips import tone, video_source
from devstack.fault_proxy import FaultProxy
from tests.support import (
    WORKER,
    World,
    by_type,
    check_stream,
    parts_queue,
    require,
    start_worker,
    wait_for,
    wait_for_event,
)


@pytest.fixture
def s3_proxy(world: World):
    proxy = FaultProxy(world.stack.moto.port)
    yield proxy
    proxy.close()


def assert_handed_back(world: World, upload, code: str, log: list[dict]) -> None:
    """A transient failure: job queued again, nothing announced, message hidden."""
    assert by_type(log, "job_retry")[0]["error_code"] == code
    job = world.job(upload.job_id)
    assert job["state"] == "queued" and job["error_code"] is None
    asset = world.asset(upload.media_id)
    assert asset["status"] == "uploaded" and asset["streaming_ready"] is False
    assert world.keys(upload.prefix + "streaming/index.m3u8") == []
    assert world.queue_counts() == (0, 1)
    assert world.work_dir_empty()


# --- storage ------------------------------------------------------------------


def test_download_cut_once_is_retried_and_the_job_succeeds(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    rule = s3_proxy.add("cut", count=1, method="GET", path_contains="/raw/", keep_bytes=2000)

    world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert rule.hits == 1
    assert world.job(upload.job_id)["state"] == "succeeded"


def test_download_failing_for_good_hands_the_job_back(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    s3_proxy.add("cut", count=1000, method="GET", path_contains="/raw/", keep_bytes=2000)

    log = world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert_handed_back(world, upload, "STORAGE_UNAVAILABLE", log)


def test_upload_failing_for_good_never_announces_the_stream(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    s3_proxy.add("status", count=10_000, method="PUT", path_contains="/streaming/", status=503)

    log = world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert_handed_back(world, upload, "STORAGE_UNAVAILABLE", log)


def test_upload_hiccups_are_absorbed(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    rule = s3_proxy.add("status", count=3, method="PUT", path_contains="/streaming/", status=503)
    s3_proxy.add("drop", count=2, method="PUT", path_contains="/streaming/")

    world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert rule.hits == 3
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert world.keys(upload.prefix + "streaming/index.m3u8")


def test_slow_storage_only_makes_the_job_slower(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    s3_proxy.add("delay", count=10_000, seconds=0.3)

    world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert world.job(upload.job_id)["state"] == "succeeded"


def test_storage_down_mid_upload_hands_the_job_back(world: World, media, s3_proxy) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    # Let a few objects through, then the line goes dead.
    s3_proxy.add("delay", count=3, method="PUT", seconds=0)
    s3_proxy.add("drop", count=10_000, method="PUT")

    log = world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert_handed_back(world, upload, "STORAGE_UNAVAILABLE", log)


def noisy_clip(media) -> Path:
    """~5 MB, so a throttled download takes seconds (noise defeats compression)."""
    return media.made(
        "noisy_640x360_8s.mp4", *video_source("640x360", "30", 8), *tone(8),
        "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
        "-crf", "26", "-c:a", "aac",
    )  # fmt: skip


def test_transcode_starts_while_the_upload_is_still_downloading(
    world: World, media, s3_proxy, tmp_path: Path
) -> None:
    """A slow line (the file takes ~4 s to come down): FFmpeg starts on the
    first bytes and the stream still comes out whole."""
    clip = noisy_clip(media)
    upload = world.upload(clip)
    rate = clip.stat().st_size / 4  # the whole file takes ~4 s to come down
    s3_proxy.add("throttle", count=100, method="GET", path_contains="/raw/", bytes_per_second=rate)

    world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    job = world.job(upload.job_id)
    assert job["state"] == "succeeded"
    timings = job["result"]["timings"]  # FFmpeg waited for the first bytes, not for all
    assert timings["download"] < 0.5 * timings["download_total"]
    assert timings["download_total"] >= 3
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    report = check_stream(local, clip, audio=True)
    assert report.variants and all(v["segments"] >= 2 for v in report.variants)


def test_download_failing_mid_transcode_is_a_storage_error(world: World, media, s3_proxy) -> None:
    """FFmpeg, already encoding, has its input cut off: the job is handed back
    as STORAGE_UNAVAILABLE, not failed as a broken or truncated upload (nor
    published with the rest of its sound as the audio track's padding). The
    run cut off here is the audio track's: the one part's video waits for its
    slice, and a slice made after the download failed is never used."""
    clip = noisy_clip(media)
    upload = world.upload(clip)
    size = clip.stat().st_size
    s3_proxy.add("cut", count=1000, method="GET", path_contains="/raw/",
                 keep_bytes=int(size * 0.6), bytes_per_second=size / 3)  # fmt: skip

    log = world.run_once(WASABI_ENDPOINT=s3_proxy.url)

    assert by_type(log, "audio_track_started")
    assert_handed_back(world, upload, "STORAGE_UNAVAILABLE", log)
    assert not by_type(log, "job_failed")


def test_download_failing_mid_job_never_passes_padding_for_the_rest_of_the_sound(
    world: World, media, s3_proxy
) -> None:
    """In shared parts: the slices the audio track finished before the cut
    are used and published, and none after it, although FFmpeg pads the
    track to the match's end once its input stops: no part is made, here or
    by a part worker, with silence for sound the upload has; the job goes
    back as STORAGE_UNAVAILABLE."""
    clip = noisy_clip(media)
    upload = world.upload(clip)
    size = clip.stat().st_size
    s3_proxy.add("cut", count=1000, method="GET", path_contains="/raw/",
                 keep_bytes=int(size * 0.6), bytes_per_second=size / 3)  # fmt: skip

    part_queue, _ = parts_queue(world)

    log = world.run_once(WASABI_ENDPOINT=s3_proxy.url, HLS_SEGMENT_SECONDS="2",
                         TRANSCODE_PART_SECONDS="2", SQS_CHUNK_QUEUE_URL=part_queue)  # fmt: skip

    assert_handed_back(world, upload, "STORAGE_UNAVAILABLE", log)
    # (the cut is at about 4.8 s of the 8: parts 2 and 3 have sound after it)
    finished = {e["part"] for e in by_type(log, "part_finished")}
    published = {k for e in by_type(log, "parts_published") for k in e["parts"]}
    assert finished <= {0, 1} and published <= {1}, (finished, published)


# --- Supabase -------------------------------------------------------------------


def test_failing_progress_writes_do_not_stop_the_job(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 4))
    world.stack.gateway.fail_matching("PATCH", '{"progress"', count=10_000, status=500)
    world.stack.gateway.fail_matching("PATCH", '{"transcode_progress"', count=10_000, status=500)

    log = world.run_once()

    assert by_type(log, "progress_write_failed")
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert world.asset(upload.media_id)["transcode_progress"] == 100


def test_database_gone_for_good_at_the_end_keeps_the_message_until_the_job_is_taken_over(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    world.stack.gateway.fail_matching("PATCH", '"succeeded"', count=10_000, table="jobs")
    scaled = {"JOB_STALE_SECONDS": "5"}

    log = world.run_once(**scaled)

    settled = by_type(log, "job_settled")[0]
    assert settled["write_landed"] is False and settled["severity"] == "warning"
    job = world.job(upload.job_id)
    assert job["state"] == "running"  # never recorded as anything it is not
    assert world.asset(upload.media_id)["streaming_ready"] is False
    assert world.queue_counts() == (0, 1)  # a copy, due once our lease is stale
    world.stack.gateway.clear_faults()
    wait_for(lambda: world.queue_counts() == (1, 0), timeout=30, what="the copy")

    log = world.run_once(**scaled)

    job = world.job(upload.job_id)
    assert (job["state"], job["attempt"]) == ("succeeded", 3)
    assert world.asset(upload.media_id)["streaming_ready"] is True
    assert world.queue_counts() == (0, 0) and world.queue_counts(world.dlq_url) == (0, 0)


def test_database_unreachable_at_claim_leaves_everything_untouched(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    gateway = world.stack.gateway
    port = gateway.port
    gateway.stop()
    try:
        log = world.run_once()
    finally:
        gateway.start(port=port)

    assert by_type(log, "job_retry")[0]["error_code"] == "DATABASE_UNAVAILABLE"
    assert world.job(upload.job_id)["state"] == "queued"
    assert world.job(upload.job_id)["attempt"] == 1
    assert world.queue_counts() == (0, 1)


# --- SQS ------------------------------------------------------------------------------


def test_failed_delete_leaves_a_redelivery_that_costs_nothing(
    world: World, media, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    sqs_proxy = FaultProxy(world.stack.moto.port)
    try:
        sqs_proxy.add("drop", count=100, header_contains="AmazonSQS.DeleteMessage")
        with monkeypatch.context() as patch:  # botocore reads the endpoint from the env
            patch.setenv("AWS_ENDPOINT_URL_SQS", sqs_proxy.url)
            log = world.run_once()
    finally:
        sqs_proxy.close()

    assert by_type(log, "sqs_action_failed")[0]["action"] == "delete"
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert world.queue_counts() == (0, 1)  # still in flight; it will come back
    world.send(upload.message())  # the redelivery (same job, same body)

    again = world.run_once()

    assert by_type(again, "job_settled")[0]["outcome"] == "skipped"
    assert not by_type(again, "ffmpeg_started")
    assert world.job(upload.job_id)["result"]["ffmpeg_runs"] == 1


# --- FFmpeg, disk, clock ------------------------------------------------------------------


def _ffmpeg_pids(job_id: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ffmpeg") and any(job_id.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids


def test_hung_ffmpeg_is_killed_and_the_job_failed(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    proc = start_worker(world, "--once", TRANSCODE_PRESET="slower", FFMPEG_STALL_SECONDS="5")
    try:
        wait_for_event(proc, "transcode_ffmpeg_started")
        deadline = time.monotonic() + 30
        while not (pids := _ffmpeg_pids(upload.job_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # FFmpeg stops making progress, as when hung
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "FFMPEG_STALLED")
    assert not _ffmpeg_pids(upload.job_id)  # killed, not left behind
    assert world.work_dir_empty()


@pytest.fixture
def small_disk(tmp_path: Path):
    """Mounts a real, small file system (tmpfs; needs root) of the size asked for."""
    mounted: list[Path] = []

    def mount(megabytes: int) -> Path:
        folder = tmp_path / f"small{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
            capture_output=True,
        )
        require(result.returncode == 0, "cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_disk_filling_up_during_the_transcode_is_transient(world: World, media, small_disk) -> None:
    clip = media.h264(640, 360, 8)
    # Room for the input (the up-front check passes with factor 1 and no
    # reserve), then lossless renditions fill the disk mid-transcode.
    disk = small_disk(clip.stat().st_size * 2 // 2**20 + 1)
    upload = world.upload(clip)

    log = world.run_once(
        TRANSCODE_WORK_DIR=str(disk / "work"), DISK_SPACE_FACTOR="1.0",
        DISK_RESERVE_MB="0", TRANSCODE_CRF="1", TRANSCODE_LADDER="360:100000",
    )  # fmt: skip

    assert by_type(log, "job_retry")[0]["error_code"] == "DISK_TOO_SMALL"
    assert world.job(upload.job_id)["state"] == "queued"
    assert list((disk / "work").iterdir()) == []


def test_worker_with_its_clock_two_hours_ahead_does_not_steal_a_live_job(
    world: World, media
) -> None:
    require(shutil.which("faketime") is not None, "faketime is not installed")
    upload = world.upload(media.h264(1280, 720, 30), send=False)
    world.send(upload.message())
    holder = start_worker(world, "--once", TRANSCODE_PRESET="slower", PROGRESS_WRITE_SECONDS="1")
    try:
        wait_for_event(holder, "transcode_ffmpeg_started")
        world.send(upload.message())  # a duplicate, picked up by the skewed worker
        skewed = subprocess.run(
            ["faketime", "-f", "+2h", sys.executable, str(WORKER), "--once"],
            env={**world.base_env(), **world.env, "JOB_STALE_SECONDS": "60",
                 "DONT_FAKE_MONOTONIC": "1"},  # fmt: skip
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=60)
    assert skewed.returncode == 0, skewed.stderr
    assert '"transcode_duplicate_dropped"' in skewed.stdout
    assert "transcode_ffmpeg_started" not in skewed.stdout
    assert world.job(upload.job_id)["attempt"] == 2  # only the holder ever claimed it


# --- poison -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempts, state, code",
    [
        ({"failed": 0, "crashed": 2}, "failed", "WORKER_CRASHED"),  # a third vanished worker
        ({"failed": 1, "crashed": 1}, "succeeded", None),  # one error and one power cut
    ],
)
def test_only_real_crashes_count_towards_a_crash_loop(
    world: World, media, attempts: dict, state: str, code: str | None
) -> None:
    upload = world.upload(media.h264(320, 180, 2), state="running", attempt=3)
    record = {"lease": {"message_id": "gone", "worker": "dead"}, "attempts": attempts}
    world.sql("UPDATE jobs SET result = %s WHERE id = %s", json.dumps(record), upload.job_id)
    world.backdate(upload.job_id, hours=1)  # its last worker died an hour ago

    log = world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == (state, code)
    assert job["result"]["attempts"]["crashed"] == attempts["crashed"] + 1
    assert bool(by_type(log, "ffmpeg_started")) is (code is None)
    assert world.asset(upload.media_id)["status"] == ("failed" if code else "ready")
    assert world.queue_counts() == (0, 0)


def test_undecodable_message_costs_one_receive(world: World) -> None:
    world.send("\x00\xff not json at all")
    log = world.run_once()
    assert by_type(log, "message_rejected")[0]["error_code"] == "INVALID_MESSAGE"
    assert world.queue_counts() == (0, 0)
