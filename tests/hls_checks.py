"""What a player needs from a finished stream, checked with m3u8, ffprobe and
FFmpeg's own ssim filter (issue: input coverage and output quality)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import m3u8

from streaming.hls_output import codecs_string


def probe(path: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-print_format", "json",
         *args, str(path)],  # fmt: skip
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(result.stdout)


def stream_times(path: Path) -> dict[str, tuple[float, float]]:
    """(start, end) of the first video and audio stream, from their packets."""
    found: dict[str, tuple[float, float]] = {}
    for kind in ("v", "a"):
        data = probe(path, "-select_streams", f"{kind}:0", "-show_entries",
                     "packet=pts_time,duration_time")  # fmt: skip
        times = [(float(p["pts_time"]), float(p.get("duration_time") or 0))
                 for p in data.get("packets", [])
                 if p.get("pts_time") not in (None, "N/A")]  # fmt: skip
        if times:
            found[kind] = (min(t for t, _ in times), max(t + d for t, d in times))
    return found


def ssim(variant: Path, source: Path, width: int, height: int, pre: str = "") -> float:
    """Mean SSIM of a rendition against the source scaled to its size."""
    chain = f"{pre}," if pre else ""
    graph = (
        f"[1:v]{chain}scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p,"
        "setpts=PTS-STARTPTS[ref];[0:v]format=yuv420p,setpts=PTS-STARTPTS[out];"
        "[out][ref]ssim"
    )
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-protocol_whitelist", "file",
         "-i", str(variant), "-i", str(source), "-lavfi", graph, "-f", "null", "-"],  # fmt: skip
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = re.search(r"SSIM .* All:([0-9.]+)", result.stderr)
    assert found, result.stderr[-1500:]
    return float(found.group(1))


@dataclass
class StreamReport:
    variants: list[dict[str, Any]] = field(default_factory=list)


def check_stream(
    local: Path,
    source: Path,
    *,
    segment: float = 6,
    audio: bool = True,
    ssim_floor: Callable[[int, int], float] | None = None,
    source_filter: str = "",
    keyframe_segments: int = 6,
) -> StreamReport:
    """Assert everything a player relies on; return what was measured."""
    master = m3u8.load(str(local / "index.m3u8"))
    assert master.is_variant and master.playlists
    src_format = probe(source, "-show_format", "-show_streams")
    duration = float(src_format["format"]["duration"])
    src_video = [s for s in src_format["streams"] if s["codec_type"] == "video"][0]
    frame = 1 / max(1.0, min(60.0, _rate(src_video.get("avg_frame_rate"))))
    src_times = stream_times(source)
    report = StreamReport()
    boundaries: list[float] | None = None
    for variant in master.playlists:
        playlist = local / variant.uri
        media = m3u8.load(str(playlist))
        durations = [seg.duration for seg in media.segments]
        assert abs(sum(durations) - duration) <= segment, (variant.uri, sum(durations), duration)
        # Same cuts in every rendition: a player can switch at any boundary.
        if boundaries is None:
            boundaries = durations
        assert len(durations) == len(boundaries)
        assert all(abs(a - b) < 0.05 for a, b in zip(durations, boundaries, strict=True))
        for seg in media.segments[:keyframe_segments]:
            first = probe(local / seg.uri, "-select_streams", "v:0", "-read_intervals", "%+#1",
                          "-show_entries", "frame=key_frame,pict_type")["frames"][0]  # fmt: skip
            assert first["key_frame"] == 1 and first["pict_type"] == "I", seg.uri
        rates = [(local / s.uri).stat().st_size * 8 / s.duration
                 for s in media.segments if s.duration >= 1.0] or [0.0]  # fmt: skip
        peak = max(rates)
        assert abs(variant.stream_info.bandwidth - peak) <= 0.1 * peak + 1, (variant.uri, peak)
        streams = probe(local / media.segments[0].uri, "-show_streams")["streams"]
        assert variant.stream_info.codecs == codecs_string(streams)
        kinds = sorted(s["codec_type"] for s in streams)
        assert kinds == (["audio", "video"] if audio else ["video"])
        video = [s for s in streams if s["codec_type"] == "video"][0]
        assert (video["width"], video["height"]) == tuple(variant.stream_info.resolution)
        assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1", "N/A")
        if audio:
            out_times = stream_times(playlist)
            assert [s["channels"] for s in streams if s["codec_type"] == "audio"] == [2]
            # In sync at the start and at the end: the audio/video offsets of the
            # source survive within one frame (plus one AAC frame at the end).
            start_gap = src_times["a"][0] - src_times["v"][0]
            out_gap = out_times["a"][0] - out_times["v"][0]
            assert abs(out_gap - start_gap) <= frame + 0.001, (start_gap, out_gap)
            end_gap = src_times["a"][1] - src_times["v"][1]
            out_end_gap = out_times["a"][1] - out_times["v"][1]
            assert abs(out_end_gap - end_gap) <= frame + 1024 / 48000 + 0.001, (
                end_gap,
                out_end_gap,
            )
        entry = {"uri": variant.uri, "resolution": variant.stream_info.resolution,
                 "bandwidth": variant.stream_info.bandwidth, "peak": int(peak),
                 "codecs": variant.stream_info.codecs, "segments": len(durations)}  # fmt: skip
        if ssim_floor is not None:
            width, height = variant.stream_info.resolution
            entry["ssim"] = ssim(playlist, source, width, height, source_filter)
            assert entry["ssim"] >= ssim_floor(width, height), entry
        report.variants.append(entry)
    return report


def _rate(text: str | None) -> float:
    try:
        top, _, bottom = (text or "0/1").partition("/")
        return float(top) / float(bottom or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0
