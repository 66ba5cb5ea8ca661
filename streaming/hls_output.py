"""What the player and the web app read: master playlist and storyboard VTT.

`BANDWIDTH` is the measured peak segment bitrate of each variant (what the
HLS spec asks for), `AVERAGE-BANDWIDTH` its mean, and `CODECS` is read from
the segments FFmpeg actually wrote, not assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.ladder import Rendition

H264_PROFILES = {
    "Constrained Baseline": (0x42, 0xE0),
    "Baseline": (0x42, 0x00),
    "Main": (0x4D, 0x40),
    "High": (0x64, 0x00),
    "High 10": (0x6E, 0x00),
    "High 4:2:2": (0x7A, 0x00),
}
AAC_LC = "mp4a.40.2"


@dataclass(frozen=True)
class VariantStats:
    rendition: Rendition
    segments: int
    duration: float
    peak_bps: int
    average_bps: int
    codecs: str

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.rendition.name,
            "width": self.rendition.width,
            "height": self.rendition.height,
            "bandwidth": self.peak_bps,
            "average_bandwidth": self.average_bps,
            "codecs": self.codecs,
            "segments": self.segments,
            "duration_seconds": round(self.duration, 3),
        }


def read_media_playlist(path: Path) -> list[tuple[float, str]]:
    """(duration, uri) of each segment of a media playlist FFmpeg wrote."""
    segments: list[tuple[float, str]] = []
    duration: float | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((duration, line))
            duration = None
    return segments


def codecs_string(streams: list[dict[str, Any]]) -> str:
    """RFC 6381 codec names of an output segment's streams."""
    names = []
    for stream in streams:
        if stream.get("codec_name") == "h264":
            profile, constraints = H264_PROFILES.get(str(stream.get("profile")), (0x64, 0x00))
            level = int(stream.get("level") or 40)
            names.append(f"avc1.{profile:02x}{constraints:02x}{level:02x}")
        elif stream.get("codec_name") == "aac":
            names.append(AAC_LC)
    return ",".join(names)


def media_playlist(segments: list[tuple[str, float, int]]) -> str:
    """A VOD media playlist of (file name, duration, bytes) segments, as FFmpeg writes one."""
    # The spec's rule: every EXTINF, rounded to the nearest integer, at most the target.
    target = max(1, max(int(seconds + 0.5) for _, seconds, _ in segments))
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS",
    ]  # fmt: skip
    for uri, seconds, _ in segments:
        lines += [f"#EXTINF:{seconds:.6f},", uri]
    return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


def measure_variant(
    rendition: Rendition, segments: list[tuple[str, float, int]], streams: list[dict[str, Any]]
) -> VariantStats:
    if not segments:
        raise ValueError(f"{rendition.name} lists no segments")
    total_bits, total_seconds, peak = 0, 0.0, 0.0
    for _, seconds, size in segments:
        bits = size * 8
        total_bits += bits
        total_seconds += seconds
        # A very short last segment would overstate the peak; the spec's peak
        # is over segments of (about) the target duration.
        if seconds >= 1.0 or len(segments) == 1:
            peak = max(peak, bits / max(seconds, 0.001))
    average = total_bits / max(total_seconds, 0.001)
    return VariantStats(
        rendition,
        len(segments),
        total_seconds,
        int(math.ceil(max(peak, average))),
        int(math.ceil(average)),
        codecs_string(streams),
    )


def master_playlist(variants: list[VariantStats]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in sorted(variants, key=lambda v: v.peak_bps, reverse=True):
        r = v.rendition
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={v.peak_bps},AVERAGE-BANDWIDTH={v.average_bps},"
            f'RESOLUTION={r.width}x{r.height},CODECS="{v.codecs}"'
        )
        lines.append(f"{r.name}.m3u8")
    return "\n".join(lines) + "\n"


def _vtt_time(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


@dataclass(frozen=True)
class Storyboard:
    tiles: int
    interval: float
    tile_width: int
    tile_height: int
    columns: int = 5
    rows: int = 5
    tag: str = "0"  # the encode's (OutputLayout.tag)

    @property
    def per_sprite(self) -> int:
        return self.columns * self.rows

    @property
    def sprites(self) -> int:
        return math.ceil(self.tiles / self.per_sprite)

    def sprite_name(self, index: int) -> str:
        return f"storyboard_{self.tag}_{index:03d}.jpg"

    def vtt(self, duration: float) -> str:
        """One cue per tile; cues are contiguous and the last ends at `duration`."""
        lines = ["WEBVTT", ""]
        for i in range(self.tiles):
            start = i * self.interval
            end = duration if i == self.tiles - 1 else (i + 1) * self.interval
            end = max(end, start + 0.001)
            sprite, cell = divmod(i, self.per_sprite)
            row, col = divmod(cell, self.columns)
            x, y = col * self.tile_width, row * self.tile_height
            lines.append(f"{_vtt_time(start)} --> {_vtt_time(end)}")
            lines.append(
                f"{self.sprite_name(sprite)}#xywh={x},{y},{self.tile_width},{self.tile_height}"
            )
            lines.append("")
        return "\n".join(lines)
