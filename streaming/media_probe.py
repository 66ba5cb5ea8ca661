"""What the upload is, from ffprobe, and the flags that keep FFmpeg inside it.

The upload is untrusted. FFmpeg is only ever given it as `file:<path>` (so a
name is never read as a protocol or an option), only through the `file`
protocol, and only to demuxers of real video containers: a playlist, a
concat list or an image sequence is refused before any byte of it is
followed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from streaming.errors import JobError
from streaming.ffmpeg_runner import run_captured

# Demuxers of the containers cameras, phones and editors produce. Not here on
# purpose: hls, concat, image2 and other formats that open further files.
VIDEO_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,avi,flv,mpeg,mxf,asf,h264,hevc,m4v,ogg,dv"
)
MAX_DURATION_SECONDS = 6 * 3600
MAX_PIXELS = 8192 * 4352


FEED_SOCKET_BUFFER = 256 * 1024
FEED_URL = re.compile(r"http://127\.0\.0\.1:[0-9]{1,5}/[A-Za-z0-9_-]{16,64}")


def input_guard(source: Path | str) -> list[str]:
    """Input options + input for an untrusted upload: a local file, or the
    job's own loopback feed (streaming/input_feed.py) and no other URL; only
    video demuxers, so no playlist can open anything else."""
    if isinstance(source, str):
        if not FEED_URL.fullmatch(source):
            raise ValueError("only the job's loopback feed is read over HTTP")
        # (a small socket buffer: a read FFmpeg abandons at a seek costs
        # the feed little, see streaming/input_feed.py)
        protocols, url = "http,tcp", source
        extra = ["-recv_buffer_size", str(FEED_SOCKET_BUFFER)]
    else:
        protocols, url, extra = "file", f"file:{source}", []
    return [
        *extra,
        "-protocol_whitelist", protocols,
        "-format_whitelist", VIDEO_DEMUXERS,
        "-i", url,
    ]  # fmt: skip


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int  # as displayed, after rotation
    height: int
    rotation: int
    fps: float
    video_codec: str
    pix_fmt: str
    has_audio: bool
    format_name: str
    field_order: str = "progressive"
    color_transfer: str = ""
    audio_channels: int = 0
    video_stream: int = 0  # the chosen stream's index in the file (not cover art)
    start_time: float = 0.0  # the file's: FFmpeg's timeline starts here
    video_end: float = 0.0  # where the video ends on that timeline, if the file says

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")

    @property
    def hdr(self) -> bool:
        """PQ (HDR10, Dolby Vision profile 8) or HLG: needs tone mapping to SDR."""
        return self.color_transfer in ("smpte2084", "arib-std-b67")

    @property
    def eight_bit_420(self) -> bool:
        """What the Jetson's NVDEC takes for H.264 (not High 10, not 4:2:2)."""
        return self.pix_fmt in ("yuv420p", "yuvj420p", "nv12")


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                return int(round(float(side["rotation"]))) % 360
            except (TypeError, ValueError):
                return 0
    tag = (stream.get("tags") or {}).get("rotate")
    try:
        return int(tag) % 360 if tag is not None else 0
    except ValueError:
        return 0


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _duration(data: dict[str, Any], video: dict[str, Any]) -> float:
    for source in (data.get("format", {}).get("duration"), video.get("duration")):
        try:
            value = float(source)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 0.0


def _display_size(video: dict[str, Any], width: int, height: int, rotation: int) -> tuple[int, int]:
    """The size as shown: non-square pixels (anamorphic DV, some broadcast
    files) widened, a quarter turn swapped; the ladder and scaler use this."""
    sar = _rate(str(video.get("sample_aspect_ratio") or "1:1").replace(":", "/"))
    if sar > 0 and abs(sar - 1) > 0.01:
        width = max(2, int(round(width * sar)))
    return (height, width) if rotation in (90, 270) else (width, height)


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and abs(seconds) < 86400 else 0.0


def _video_end(data: dict[str, Any], video: dict[str, Any]) -> float:
    duration = _seconds(video.get("duration"))
    if duration <= 0:
        return 0.0
    start = _seconds(video.get("start_time")) - _seconds(data.get("format", {}).get("start_time"))
    return max(0.0, start) + duration


def _index(stream: dict[str, Any]) -> int:
    try:
        return max(0, int(stream.get("index") or 0))
    except (TypeError, ValueError):
        return 0


def parse_probe(data: dict[str, Any]) -> MediaInfo:
    """ffprobe's JSON → MediaInfo; JobError when it is not a usable video."""
    streams = data.get("streams") or []
    videos = [
        s for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
    ]  # fmt: skip
    if not videos:
        raise JobError("INPUT_UNSUPPORTED", "the upload has no video stream")
    video = videos[0]
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width < 16 or height < 16:
        raise JobError("INPUT_UNSUPPORTED", f"video size {width}x{height} is not usable")
    if width * height > MAX_PIXELS:
        raise JobError("INPUT_TOO_LARGE", f"video size {width}x{height} is beyond 8K")
    duration = _duration(data, video)
    if duration <= 0:
        raise JobError("INPUT_UNSUPPORTED", "the upload has no readable duration")
    if duration > MAX_DURATION_SECONDS:
        raise JobError("INPUT_TOO_LARGE", f"duration {duration:.0f}s is longer than 6 hours")
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    rotation = _rotation(video)
    width, height = _display_size(video, width, height, rotation)
    return MediaInfo(
        duration=duration,
        width=width,
        height=height,
        rotation=rotation,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        video_codec=str(video.get("codec_name") or "unknown"),
        pix_fmt=str(video.get("pix_fmt") or "unknown"),
        has_audio=bool(audios),
        format_name=str(data.get("format", {}).get("format_name") or ""),
        field_order=str(video.get("field_order") or "progressive"),
        color_transfer=str(video.get("color_transfer") or ""),
        audio_channels=int(audios[0].get("channels") or 0) if audios else 0,
        video_stream=_index(video),
        start_time=_seconds(data.get("format", {}).get("start_time")),
        video_end=_video_end(data, video),
    )


def probe(
    ffprobe: str, path: Path | str, check: Callable[[], None] = lambda: None, timeout: float = 120
) -> MediaInfo:
    """ffprobe on the upload; `check()` runs every fraction of a second while
    it works (a stop request or a lost job ends it at once)."""
    command = [
        ffprobe, "-hide_banner", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", *input_guard(path),
    ]  # fmt: skip
    try:
        result = run_captured(command, check=check, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise JobError("INPUT_UNSUPPORTED", f"ffprobe did not finish in {timeout:.0f}s") from None
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or ["no output"]
        message = reason[0].replace(input_guard(path)[-1], "input")  # (never the feed's URL)
        raise JobError("INPUT_UNSUPPORTED", f"not a readable video: {message[:300]}")
    try:
        data = json.loads(result.stdout or "{}")
    except ValueError:
        raise JobError("INPUT_UNSUPPORTED", "ffprobe gave no readable answer") from None
    return parse_probe(data)


def probe_output(
    ffprobe: str, path: Path, check: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Streams of a file we wrote ourselves (for CODECS)."""
    command = [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", f"file:{path}"]
    try:
        result = run_captured(command, check=check, timeout=60)
    except subprocess.TimeoutExpired:
        return {}
    try:
        return json.loads(result.stdout or "{}") if result.returncode == 0 else {}
    except ValueError:
        return {}
