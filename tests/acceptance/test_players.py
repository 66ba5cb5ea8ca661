"""The stream as viewers get it: both of the web app's players (hls.js 1.5,
Shaka Player 4.16) in headless Chromium, every variant forced once, playing
across segment boundaries; and the HLS rules Safari's native player holds
the stream to."""

from __future__ import annotations

import re
from pathlib import Path

import m3u8

from tests.players import assert_plays
from tests.support import World


def hls_rules(local: Path) -> None:
    """What the HLS spec (RFC 8216) requires of the stream, and Safari enforces."""
    master_text = (local / "index.m3u8").read_text()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in master_text
    master = m3u8.loads(master_text)
    for variant in master.playlists:
        info = variant.stream_info
        assert info.bandwidth and info.codecs and info.resolution, variant.uri
        text = (local / variant.uri).read_text()
        media = m3u8.loads(text)
        target = media.target_duration
        # Each EXTINF, rounded to the nearest integer, at most the target duration.
        assert all(round(seg.duration) <= target for seg in media.segments), variant.uri
        assert media.is_endlist and media.playlist_type == "vod"
        assert "#EXT-X-MAP" not in text  # MPEG-TS segments, no init segment
        assert all(re.fullmatch(r"[\w.-]+\.ts", seg.uri) for seg in media.segments)


def test_both_players_play_every_variant_across_segment_boundaries(
    world: World, media, tmp_path: Path
) -> None:
    clip = media.h264(1280, 720, 20)
    upload = world.upload(clip)
    assert world.run_worker().returncode == 0
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")

    hls_rules(local)
    reports = assert_plays(local, at=[6.0, 12.0])

    for report in reports.values():
        assert sorted(level["height"] for level in report["levels"]) == [540, 720]
