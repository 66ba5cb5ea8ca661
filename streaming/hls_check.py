"""A stream checked as a player reads it, segment by segment, before
anything says it is ready.

Each part's segments are read back with ffprobe (one run per rendition: the
segments concatenated, each packet placed in its segment by its byte
position) and held to what a player needs of every segment on its own:

- it starts on a keyframe, and its `EXTINF` is its real duration;
- its frames continue the previous segment's, without a gap or an overlap
  of more than one frame (across part joins too: `check_join`);
- it carries the audio of its own span, and only that: the HLS muxer cuts
  at a keyframe's decode time, so the sound changes segment between that
  frame's decode and presentation times, within `AUDIO_SLACK`;
- it has audio if and only if the upload has.

What a part's check measures of its edges (`Edges`) goes into its record, so
that the joins are checked again when the parts are put together, wherever
each was encoded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.ffmpeg_runner import run_captured

AUDIO_SLACK = 0.1  # seconds: where a segment's audio may begin and end around its cut
EXTINF_SLACK = 0.1  # seconds, beyond one frame


class StreamInvalid(Exception):
    """What a player would stumble on, in words an operator can act on."""


@dataclass(frozen=True)
class Packet:
    video: bool
    pts: float
    dts: float
    duration: float
    key: bool


@dataclass(frozen=True)
class Span:
    """What one segment holds."""

    first_pts: float  # its first frame's presentation time
    first_dts: float  # that frame's decode time: where the muxer cut
    end: float  # the end of its last frame
    frame: float  # a frame's duration
    audio: tuple[float, float] | None  # its first audio packet's start, its last one's end


@dataclass(frozen=True)
class Edges:
    """A part's first and last instants in one rendition, for the joins."""

    first_pts: float
    first_dts: float
    end: float
    frame: float

    def to_list(self) -> list[float]:
        return [round(v, 6) for v in (self.first_pts, self.first_dts, self.end, self.frame)]

    @classmethod
    def from_list(cls, value: object) -> Edges:
        """Read back from a record; ValueError for anything unexpected."""
        if not (isinstance(value, list) and len(value) == 4):
            raise ValueError("bad edges")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
            raise ValueError("bad edges")
        first_pts, first_dts, end, frame = (float(v) for v in value)
        if not (first_dts <= first_pts < end and 0 < frame <= 10 and end - first_pts < 100_000):
            raise ValueError("bad edges")
        return cls(first_pts, first_dts, end, frame)


def read_packets(
    ffprobe: str, files: Sequence[Path], check: Callable[[], None] = lambda: None
) -> list[list[Packet]]:
    """Every packet of each file (segments we wrote), in file order."""
    if not files:
        return []
    if any("|" in str(f) for f in files):
        raise StreamInvalid("a segment path holds '|'")
    sizes = [f.stat().st_size for f in files]
    command = [
        ffprobe, "-v", "error", "-protocol_whitelist", "concat,file", "-f", "mpegts",
        "-show_entries", "packet=codec_type,pts_time,dts_time,duration_time,pos,flags",
        "-of", "compact=p=0", "concat:" + "|".join(str(f) for f in files),
    ]  # fmt: skip
    result = run_captured(command, check=check, timeout=600)
    if result.returncode != 0:
        raise StreamInvalid(f"ffprobe could not read the segments: {result.stderr[-300:]}")
    return place_packets(result.stdout, sizes)


def place_packets(text: str, sizes: list[int]) -> list[list[Packet]]:
    """ffprobe's compact packet lines → each segment's packets (by byte position)."""
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    placed: list[list[Packet]] = [[] for _ in sizes]
    index, last_pos = 0, {"video": -1, "audio": -1}
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split("|") if "=" in item)
        kind = fields.get("codec_type")
        if kind not in ("video", "audio"):
            continue
        try:
            pts, dts = float(fields["pts_time"]), float(fields.get("dts_time") or "nan")
            # (the frames a parser splits out of one PES have no position of
            # their own: they are in the PES's segment)
            pos = last_pos[kind] if fields.get("pos") == "N/A" else int(fields["pos"])
        except (KeyError, ValueError):
            raise StreamInvalid(f"an {kind} packet without a timestamp or position") from None
        if pos < 0 or math.isnan(pts):
            raise StreamInvalid(f"an {kind} packet without a timestamp or position")
        last_pos[kind] = pos
        while index < len(sizes) and pos >= bounds[index + 1]:
            index += 1
        if index == len(sizes):
            raise StreamInvalid("a packet beyond the segments' bytes")
        duration = _float(fields.get("duration_time"))
        key = "K" in fields.get("flags", "")
        dts = pts if math.isnan(dts) else dts
        placed[index].append(Packet(kind == "video", pts, dts, duration, key))
    return placed


def _float(text: str | None) -> float:
    try:
        value = float(text or "0")
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def span_of(name: str, packets: list[Packet]) -> Span:
    """A segment's span; StreamInvalid if it has no video or does not open on a keyframe."""
    video = [p for p in packets if p.video]
    if not video:
        raise StreamInvalid(f"{name} holds no video")
    if not video[0].key:
        raise StreamInvalid(f"{name} does not start on a keyframe")
    times = sorted(p.pts for p in video)
    steps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    stated = [p.duration for p in video if p.duration > 0]
    frame = statistics.median(steps or stated or [1 / 30])
    last = max(video, key=lambda p: p.pts)
    end = last.pts + (last.duration or frame)
    audio = [p for p in packets if not p.video]
    sound = None
    if audio:
        sound = (min(p.pts for p in audio), max(p.pts + p.duration for p in audio))
    return Span(times[0], video[0].dts, end, frame, sound)


def measured(spans: Sequence[Span]) -> list[float]:
    """Each segment's real length: to the next one's first frame, the last to its end."""
    ends = [s.first_pts for s in spans[1:]] + [spans[-1].end] if spans else []
    return [round(end - s.first_pts, 6) for s, end in zip(spans, ends, strict=True)]


def check_segments(
    listed: Sequence[tuple[str, float]], spans: Sequence[Span], *, has_audio: bool,
    stream_starts: bool = False, stream_ends: bool = False,
) -> Edges:  # fmt: skip
    """A part's segments of one rendition, as listed (name, EXTINF) and as
    they are; returns the part's edges. `stream_starts`: the part is the
    stream's first (the upload's sound may begin before its picture);
    `stream_ends`: its last (its last segment may end early on either track)."""
    if not spans or len(listed) != len(spans):
        raise StreamInvalid("the playlist and the segments differ")
    for i, ((name, extinf), span) in enumerate(zip(listed, spans, strict=False)):
        last = i == len(spans) - 1
        following = spans[i + 1] if not last else None
        real = (following.first_pts if following else span.end) - span.first_pts
        if abs(extinf - real) > EXTINF_SLACK + span.frame:
            raise StreamInvalid(f"{name}: EXTINF {extinf:.3f}s, but it holds {real:.3f}s")
        if following is not None:
            _continues(name, span.end, following.first_pts, span.frame)
        _check_audio(name, span, following, has_audio, stream_starts and i == 0,
                     stream_ends and last)  # fmt: skip
    return Edges(spans[0].first_pts, spans[0].first_dts, spans[-1].end, spans[0].frame)


def _continues(name: str, end: float, next_start: float, frame: float) -> None:
    gap = next_start - end
    if abs(gap) > frame + 0.001:
        what = "a gap" if gap > 0 else "an overlap"
        raise StreamInvalid(f"{what} of {abs(gap):.3f}s after {name}")


def _check_audio(
    name: str, span: Span, following: Span | None, has_audio: bool, stream_start: bool,
    stream_end: bool,
) -> None:  # fmt: skip
    if span.audio is None:
        if has_audio:
            raise StreamInvalid(f"{name} carries no audio")
        return
    if not has_audio:
        raise StreamInvalid(f"{name} carries audio the upload does not have")
    start, end = span.audio
    early = start < span.first_dts - AUDIO_SLACK and not stream_start
    if early or start > span.first_pts + AUDIO_SLACK:
        raise StreamInvalid(
            f"{name}: its audio starts at {start:.3f}s, its video at {span.first_pts:.3f}s"
        )
    if stream_end:
        return
    # (the part's last segment: its slice ends where the next part's video begins)
    cut_dts, cut_pts = (following.first_dts, following.first_pts) if following else (span.end,) * 2
    if end < cut_dts - AUDIO_SLACK or end > cut_pts + AUDIO_SLACK:
        raise StreamInvalid(f"{name}: its audio ends at {end:.3f}s, its video at {cut_pts:.3f}s")


def check_playlist(name: str, text: str) -> None:
    """A VOD media playlist as a player takes it: every EXTINF, rounded, at
    most `EXT-X-TARGETDURATION`, and an end."""
    target, longest = None, 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            longest = max(longest, int(float(line[8:].split(",")[0]) + 0.5))
    if target is None or longest > target:
        raise StreamInvalid(f"{name}: a segment of {longest}s, over the target {target}s")
    if "#EXT-X-ENDLIST" not in text:
        raise StreamInvalid(f"{name}: no end")


def check_join(name: str, before: Edges, after: Edges) -> None:
    """Two parts of one rendition meet without a gap or an overlap."""
    _continues(name, before.end, after.first_pts, max(before.frame, after.frame))
