"""Jobs in several parts (TRANSCODE_PART_SECONDS=6 on clips of 20-odd s):
the joins are invisible in every container, with interlaced video and with
audio that stops before the video; the part records go once the stream is
complete; a change of settings between attempts starts over."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.clips import tone, video_source
from tests.support import (
    World,
    assert_continuous,
    clip_with_tone,
    probe,
    scaled,
    start_worker,
    stop_after,
    stream_packets,
)

PARTS = {"TRANSCODE_PART_SECONDS": "6"}

# name: FFmpeg arguments making the clip, file suffix
CLIPS = {
    "mp4": ([*video_source(seconds=20), *tone(20), "-c:v", "libx264", "-preset", "ultrafast",
             "-g", "90", "-c:a", "aac"], "mp4"),
    "mpegts_interlaced": ([*video_source("720x576", "25", 20), *tone(20), "-vf", "interlace",
                           "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ilme+ildct",
                           "-top", "1", "-c:a", "aac"], "ts"),
    "matroska_no_index": ([*video_source(seconds=20), *tone(20), "-c:v", "libx264", "-preset",
                           "ultrafast", "-c:a", "aac", "-cues_to_front", "0",
                           "-reserve_index_space", "0"], "mkv"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_parts_join_into_one_continuous_stream(
    world: World, media, tmp_path: Path, name: str
) -> None:
    args, suffix = CLIPS[name]
    clip = media.made(f"parts_{name}.{suffix}", *args)
    upload = world.upload(clip, file_name=f"match.{suffix}")

    run = world.run_worker(**PARTS)

    assert run.returncode == 0, run.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    assert job["result"]["parts"] == 4
    assert world.keys(upload.prefix + "transcode-parts/") == []  # nothing left after success
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    assert_continuous(local, clip)


def test_audio_that_stops_early_is_followed_by_silence(world: World, media, tmp_path) -> None:
    clip = clip_with_tone(media, "parts_short_audio.mp4", audio_seconds=4)
    upload = world.upload(clip)

    run = world.run_worker(**PARTS)

    assert run.returncode == 0, run.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    last = sorted(local.glob("360p_*.ts"))[-1]
    kinds = sorted(s["codec_type"] for s in probe(last, "-show_streams")["streams"])
    assert kinds == ["audio", "video"]  # the stream keeps its audio to the end
    assert stream_packets([last], "a")


def test_a_change_of_settings_between_attempts_starts_over(world: World, media, tmp_path) -> None:
    clip = clip_with_tone(media, "parts_change.mp4", seconds=30)
    upload = world.upload(clip)
    env = {**scaled(world), **PARTS}
    first = start_worker(world, TRANSCODE_LADDER="360:500", TRANSCODE_PRESET="slower", **env)
    stop_after(first, "transcode_part_recorded", 1)
    assert world.keys(upload.prefix + "transcode-parts/")

    run = world.run_worker(**env)

    assert run.returncode == 0, run.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    assert job["result"]["parts_adopted"] == []
    assert world.keys(upload.prefix + "transcode-parts/") == []
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    tags = {p.name.split("_")[1] for p in local.glob("*.ts")}
    assert len(tags) == 1, tags  # none of the first attempt's segments is left
    assert_continuous(local, clip)
