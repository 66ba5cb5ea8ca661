"""A real-length match as a coach uploads it and a player scrubs it: 20
minutes of low-resolution footage with continuous sound, the default part
length (four parts), both web-app players from the start, in the middle of
parts and from 3 s before every join, with sound all the while; and every
segment, read on its own, carries the audio of its own span."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.players import assert_plays
from tests.support import World, check_segments_as_read, video_source

MINUTES = 20
PART_SECONDS = 300  # the default (TRANSCODE_PART_SECONDS)

pytestmark = pytest.mark.slow


def test_a_twenty_minute_match_plays_from_anywhere_with_its_sound(
    world: World, media, tmp_path: Path
) -> None:
    seconds = MINUTES * 60
    clip = media.made(
        "long_match_180p_10fps.mp4", *video_source("320x180", "10", seconds),
        "-t", str(seconds), "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac", "-b:a", "64k",
    )  # fmt: skip
    upload = world.upload(clip)

    run = world.run_worker()  # the default settings

    assert run.returncode == 0, run.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    # (four, and a fifth of a few milliseconds where the muxer that made the
    # clip let its audio run past the 20 minutes)
    assert job["result"]["parts"] in (seconds // PART_SECONDS, seconds // PART_SECONDS + 1)
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    variants = [p.name for p in local.glob("*.m3u8") if p.name != "index.m3u8"]
    for uri in variants:
        check_segments_as_read(local, uri)
    joins = [k * PART_SECONDS for k in range(1, seconds // PART_SECONDS)]
    middles = [k * PART_SECONDS + 150.0 for k in range(seconds // PART_SECONDS)]
    # from the start; into the middle of each part; from 3 s before each join
    at = [1.0, *(t + 1.0 for t in middles), *(t + 1.0 for t in joins)]
    assert_plays(local, at=sorted(at), lead=4.0, audio=True, timeout=600)
