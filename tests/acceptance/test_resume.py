"""A job cut into parts survives its worker: SIGTERM or SIGKILL at 60 %, and
a second worker (its own work dir) encodes only the rest, into one stream
as continuous as an uninterrupted run's (marker `slow`).

Five parts of 12 s of a 60-s 720p clip with a continuous tone; the first
worker is stopped once three parts are recorded. Timing is production's at
1/30 (tests/support.py `scaled`). The ratio compares the `seconds` of the
two workers' `job_succeeded` lines, measured in the same test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.players import assert_plays
from tests.support import (
    BUCKET,
    World,
    assert_continuous,
    audio_packets,
    check_final_output,
    clip_with_tone,
    scaled,
    start_worker,
    stop_after,
    stop_all,
    wait_for,
)

pytestmark = pytest.mark.slow

PART_SECONDS = 12
PARTS = 5


def _succeeded_seconds(output: str) -> float:
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line)["event_type"] == "transcode_job_succeeded":
            return float(json.loads(line)["seconds"])
    raise AssertionError("no job_succeeded line")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_interrupted_job_resumes_from_its_recorded_parts(
    world: World, media, tmp_path: Path, how: str
) -> None:
    clip = clip_with_tone(media, "resume.mp4", "1280x720", 60)
    # (x264 `veryfast`, so that encoding, not a job's fixed costs, is most of the time,
    # as in a real match)
    env = {**scaled(world), "TRANSCODE_PART_SECONDS": str(PART_SECONDS),
           "TRANSCODE_PRESET": "veryfast"}  # fmt: skip
    whole = world.upload(clip)
    run = world.run_worker(**env)
    assert run.returncode == 0, run.stderr
    whole_seconds = _succeeded_seconds(run.stdout)

    upload = world.upload(clip)
    # SIGKILL once three parts are recorded; SIGTERM once three are encoded,
    # which the stopping worker then records before it hands the job back
    step = "transcode_part_recorded" if how == "SIGKILL" else "transcode_part_finished"
    stop_after(start_worker(world, **env), step, 3, how)
    assert world.job(upload.job_id)["state"] in ("queued", "running")
    # (after SIGKILL the message comes back once its visibility and the lease run out)
    second = start_worker(world, TRANSCODE_WORK_DIR=str(tmp_path / "second"), **env)
    try:
        wait_for(lambda: world.job(upload.job_id)["state"] == "succeeded", what="success")
        wait_for(lambda: world.queue_counts() == (0, 0), timeout=60, what="an empty queue")
    finally:
        output = stop_all([second])[0]
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["parts"] == PARTS
    assert job["result"]["parts_adopted"][:3] == [0, 1, 2]
    resumed = _succeeded_seconds(output)
    assert resumed <= 0.6 * whole_seconds, (resumed, whole_seconds)

    assert world.keys(upload.prefix + "transcode-parts/") == []
    check_final_output(world, upload, tmp_path)
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "resumed")
    assert_continuous(local, clip)
    reference = world.download_prefix(whole.prefix + "streaming/", tmp_path / "whole")
    whole_audio = audio_packets(sorted(reference.glob("720p_*.ts")))
    assert len(audio_packets(sorted(local.glob("720p_*.ts")))) == len(whole_audio)
    if how == "SIGKILL":  # (the same stream either way: played once, for the suite's time)
        joins = [k * PART_SECONDS for k in range(1, PARTS)]
        assert_plays(local, at=[t + 1.0 for t in joins], lead=4.0, audio=True)  # from 3 s before


def test_a_recorded_part_missing_from_storage_is_encoded_again(
    world: World, media, tmp_path: Path
) -> None:
    clip = clip_with_tone(media, "resume_short.mp4", seconds=36)
    env = {**scaled(world), "TRANSCODE_PART_SECONDS": "12", "TRANSCODE_PRESET": "veryfast"}
    upload = world.upload(clip)
    stop_after(start_worker(world, **env), "transcode_part_recorded", 2)
    lost = [k for k in world.keys(upload.prefix + "streaming/") if k.endswith("_00002.ts")]
    assert lost, "part 1's segments were uploaded"
    world.s3.delete_object(Bucket=BUCKET, Key=lost[0])
    second = world.run_worker("--once", TRANSCODE_WORK_DIR=str(tmp_path / "second"), **env)
    assert second.returncode == 0, second.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job
    adopted = job["result"]["parts_adopted"]
    assert 0 in adopted and 1 not in adopted, adopted  # (2 too, if it was recorded in time)
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    assert_continuous(local, clip)
