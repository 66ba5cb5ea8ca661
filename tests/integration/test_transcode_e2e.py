"""Acceptance: the real daemon as a subprocess against the real local stack.

What a user would check: the master playlist parses, every variant plays to
the end, durations match the source, the storyboard covers the video, the DB
rows are in the contract's final states, the queue is empty and the work dir
is clean.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import m3u8
import pytest

from tests.support import BUCKET, World, events

SEGMENT = 6


def ffprobe_json(path: Path, *entries: str) -> dict:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-protocol_whitelist",
            "file",
            "-print_format",
            "json",
            *entries,
            str(path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def source_duration(clip: Path) -> float:
    return float(ffprobe_json(clip, "-show_format")["format"]["duration"])


def decoded_duration(playlist: Path) -> float:
    """Decode the variant to the end (as a player would) and return how long it ran."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-protocol_whitelist",
            "file",
            "-i",
            str(playlist),
            "-f",
            "null",
            "-",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    data = ffprobe_json(playlist, "-show_format")
    return float(data["format"]["duration"])


def _encode_tag(master: m3u8.M3U8) -> str:
    """The encode's tag, read off a segment name (`720p_<tag>_00000.ts`)."""
    first = m3u8.load(master.base_uri + master.playlists[0].uri).segments[0].uri
    return first.split("_")[1]


def check_stream(
    world: World, upload, clip: Path, tmp_path: Path, segment: int = SEGMENT
) -> m3u8.M3U8:
    """Everything a player and the web app rely on for one finished upload."""
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    master = m3u8.load(str(local / "index.m3u8"))
    assert master.is_variant and master.playlists
    expected = source_duration(clip)
    for variant in master.playlists:
        assert not variant.uri.startswith(("http://", "https://", "/"))
        media = m3u8.load(str(local / variant.uri))
        assert media.is_endlist and all(seg.uri.endswith(".ts") for seg in media.segments)
        assert not media.segment_map  # no fMP4 init segment: the playback function needs .ts
        total = sum(seg.duration for seg in media.segments)
        assert abs(total - expected) <= segment, (variant.uri, total, expected)
        assert abs(decoded_duration(local / variant.uri) - expected) <= segment
        width, height = variant.stream_info.resolution
        probed = ffprobe_json(local / media.segments[0].uri, "-show_streams")["streams"]
        video = [s for s in probed if s["codec_type"] == "video"][0]
        assert (video["width"], video["height"]) == (width, height)
        profile_prefix = {
            "High": "avc1.6400",
            "Main": "avc1.4d40",
            "Constrained Baseline": "avc1.42e0",
        }
        assert variant.stream_info.codecs.startswith(profile_prefix[video["profile"]])
        assert int(variant.stream_info.codecs[9:11], 16) == video["level"]
    vtt = (local / "thumbnails" / "storyboard.vtt").read_text()
    cues = re.findall(r"(\d\d):(\d\d):(\d\d\.\d+) --> (\d\d):(\d\d):(\d\d\.\d+)\n(\S+)", vtt)
    assert cues
    ends, extent = [], {}
    for h1, m1, s1, h2, m2, s2, target in cues:
        start = int(h1) * 3600 + int(m1) * 60 + float(s1)
        end = int(h2) * 3600 + int(m2) * 60 + float(s2)
        assert start == pytest.approx(ends[-1] if ends else 0.0, abs=0.002)
        ends.append(end)
        sprite, _, xywh = target.partition("#xywh=")
        x, y, w, h = map(int, xywh.split(","))
        old = extent.get(sprite, (0, 0))
        extent[sprite] = (max(old[0], x + w), max(old[1], y + h))
        assert w == 320
    assert ends[-1] == pytest.approx(expected, abs=0.05)
    assert len(cues) == -int(-expected // segment)  # one tile per segment interval
    for sprite, (width, height) in extent.items():
        # The web app takes a sprite's size from the largest x+w, y+h it sees.
        size = ffprobe_json(local / "thumbnails" / sprite, "-show_streams")["streams"][0]
        assert (size["width"], size["height"]) == (width, height), sprite
    posters = list((local / "thumbnails").glob("poster_*.jpg"))
    assert len(posters) == 1 and posters[0].stat().st_size > 1000
    return master


def test_upload_becomes_adaptive_hls_and_rows_reach_final_states(
    world: World, media, tmp_path: Path
) -> None:
    clip = media.h264(1280, 720, 8)
    upload = world.upload(clip)

    run = world.run_worker(TRANSCODE_PRESET="veryfast")

    assert run.returncode == 0, run.stderr
    master = check_stream(world, upload, clip, tmp_path)
    assert sorted(p.stream_info.resolution for p in master.playlists) == [(960, 540), (1280, 720)]
    for variant in master.playlists:
        assert variant.stream_info.codecs.endswith(",mp4a.40.2")
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded" and float(job["progress"]) == 1.0
    assert job["attempt"] == 2 and job["finished_at"] is not None
    assert job["error_code"] is None
    assert job["result"]["decoder"] == "software" and job["result"]["ffmpeg_runs"] == 1
    assert {r["name"] for r in job["result"]["renditions"]} == {"720p", "540p"}
    asset = world.asset(upload.media_id)
    assert asset["status"] == "ready" and asset["processing_stage"] == "complete"
    assert asset["streaming_ready"] is True and asset["transcode_progress"] == 100
    assert asset["duration_seconds"] == pytest.approx(8.0, abs=0.1)
    tag = _encode_tag(master)
    thumbs = upload.prefix + "streaming/thumbnails/"
    assert asset["thumbnail_path"] == thumbs + f"poster_{tag}.jpg"
    assert asset["thumbnail_vtt_path"] == thumbs + "storyboard.vtt"
    assert asset["thumbnail_sprite_path"] == thumbs + f"storyboard_{tag}_000.jpg"
    assert asset["thumbnail_frame_count"] == 2 and asset["thumbnail_interval_seconds"] == SEGMENT
    assert (asset["thumbnail_width"], asset["thumbnail_height"]) == (320, 180)
    assert world.queue_counts() == (0, 0)
    assert world.work_dir_empty()
    # Every object has its real type and a cache lifetime.
    for key in world.keys(upload.prefix + "streaming/"):
        head = world.s3.head_object(Bucket=BUCKET, Key=key)
        suffix = Path(key).suffix
        assert head["ContentType"] == {
            ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t",
            ".jpg": "image/jpeg", ".vtt": "text/vtt",
        }[suffix]  # fmt: skip
        assert "max-age=" in head["CacheControl"]
    # The web app saw progress and the stages in order.
    log = events(run.stdout)
    assert all(e["event_type"].startswith("transcode_") for e in log)
    assert any(e["event_type"] == "transcode_ffmpeg_started" for e in log)


@pytest.mark.parametrize(
    "clip_name, expected_resolutions, has_audio",
    [
        ("no_audio", [(640, 360)], False),
        ("rotated_portrait", [(360, 640)], True),
        ("hevc", [(640, 360)], True),
        ("odd_size", [(320, 240)], True),
    ],
)
def test_varied_inputs_play(
    world: World, media, tmp_path: Path, clip_name: str, expected_resolutions, has_audio: bool
) -> None:
    clip = {
        "no_audio": lambda: media.h264(640, 360, 6, audio=False),
        "rotated_portrait": media.rotated_portrait,
        "hevc": media.hevc,
        "odd_size": media.odd_size,
    }[clip_name]()
    upload = world.upload(clip)

    run = world.run_worker()

    assert run.returncode == 0, run.stderr
    master = check_stream(world, upload, clip, tmp_path)
    assert [p.stream_info.resolution for p in master.playlists] == expected_resolutions
    for variant in master.playlists:
        assert variant.stream_info.codecs.endswith(",mp4a.40.2") is has_audio
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert world.asset(upload.media_id)["streaming_ready"] is True


def test_long_storyboard_spans_sprites_sized_to_their_tiles(
    world: World, media, tmp_path: Path
) -> None:
    clip = media.h264(320, 180, 58, audio=False)  # 29 tiles of 2 s: a full sprite + 4 tiles
    upload = world.upload(clip)

    run = world.run_worker(HLS_SEGMENT_SECONDS="2")

    assert run.returncode == 0, run.stderr
    check_stream(world, upload, clip, tmp_path, segment=2)
    asset = world.asset(upload.media_id)
    assert asset["thumbnail_frame_count"] == 29 and asset["thumbnail_interval_seconds"] == 2
    sprites = [k for k in world.keys(upload.prefix) if "/storyboard_" in k]
    names = [k.rsplit("/", 1)[1] for k in sorted(sprites)]
    assert [re.sub("_[0-9a-f]{8}_", "_", name) for name in names] == [
        "storyboard_000.jpg", "storyboard_001.jpg",
    ]  # fmt: skip


def test_a_retranscode_never_reuses_a_name_the_cdn_may_keep(
    world: World, media, tmp_path: Path
) -> None:
    """Viewers fetch through a CDN that keeps objects as long as their
    Cache-Control says: playlists a minute at most, and anything kept longer
    has a name no later encode writes again. The legacy playback function's
    `presigned/` copies are left alone."""
    clip = media.h264(640, 360, 4)
    upload = world.upload(clip)
    assert world.run_worker().returncode == 0
    first = set(world.keys(upload.prefix + "streaming/"))
    legacy = upload.prefix + "streaming/presigned/index.m3u8"
    world.s3.put_object(Bucket=BUCKET, Key=legacy, Body=b"#EXTM3U\n")
    world.sql("UPDATE jobs SET state = 'queued' WHERE id = %s", upload.job_id)
    world.send(upload.message())

    assert world.run_worker(TRANSCODE_LADDER="360:800,180:300").returncode == 0

    second = set(world.keys(upload.prefix + "streaming/")) - {legacy}
    assert legacy in world.keys(upload.prefix + "streaming/presigned/")
    reused = first & second
    assert reused == {upload.prefix + "streaming/" + n for n in (
        "index.m3u8", "360p.m3u8", "thumbnails/storyboard.vtt")}  # fmt: skip
    for key in second:
        head = world.s3.head_object(Bucket=BUCKET, Key=key)
        cache = head["CacheControl"]
        if key.endswith((".m3u8", ".vtt")):
            assert cache == "public, max-age=60", key
        else:
            assert "immutable" in cache, key
        assert head["ContentType"] != "binary/octet-stream", key
    asset = world.asset(upload.media_id)
    assert asset["thumbnail_path"] in second and asset["thumbnail_sprite_path"] in second
