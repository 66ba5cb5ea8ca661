"""A job cut into parts on the segment grid, and the record a finished part
leaves for the next attempt.

Part k holds the video from `start(k)` to `start(k + 1)` of the timeline
FFmpeg gives the upload (seconds from the file's start), a whole number of
segments, and the audio packets that begin in
the same span: the audio is encoded once for the whole file
(streaming/audio_track.py), so a join is as seamless as any other packet
boundary. Each part's segments are numbered and timestamped as in one
continuous run, so a variant playlist is the parts' segment lists joined.

A `PartRecord` is a part's checkpoint: the plan it belongs to (a
fingerprint of the upload's identity and of every setting that changes the
bytes), the encode tag in its segment names, and each segment it uploaded
with its duration and size. Records are read back from storage, so
`PartRecord.from_json` trusts nothing in them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from streaming.hls_check import Edges

RECORD_VERSION = 2  # 2: each rendition's edges, measured by the part's check
MAX_RECORD_BYTES = 4 * 1024 * 1024  # 10 000 segments per rendition fit well within
GRID_SLACK = 0.001  # seconds: less than any frame's duration, more than any rounding


def fingerprint(upload: dict[str, Any], settings: dict[str, Any]) -> str:
    """What must be equal for parts of two attempts to join into one stream."""
    text = json.dumps({"upload": upload, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PartPlan:
    fingerprint: str
    tag: str  # in every segment's name (streaming/ffmpeg_command.py OutputLayout)
    # Where the grid starts: 0, FFmpeg's zero. (Not the video's first frame as
    # ffprobe states it: decoders may stamp frames otherwise, e.g. interlaced
    # MPEG-TS; a video that starts late only has a shorter first segment.)
    origin: float
    length: int  # seconds per part, whole segments
    segment_seconds: int
    duration: float

    @property
    def count(self) -> int:
        return max(1, math.ceil((self.duration - self.origin) / self.length - 1e-6))

    @property
    def segments_per_part(self) -> int:
        return self.length // self.segment_seconds

    def start(self, k: int) -> float | None:
        """Where part k begins (None: at the beginning of the file): just
        before its first frame's time on the grid, so that a frame on the grid
        falls in the part it begins, whatever the rounding of its timestamp."""
        return None if k == 0 else round(self.origin + k * self.length - GRID_SLACK, 6)

    def end(self, k: int) -> float | None:
        """Where part k ends (None: at the end of the file)."""
        return None if k == self.count - 1 else self.start(k + 1)

    def seconds(self, k: int) -> float:
        """How much of the match part k holds (for progress)."""
        start, end = self.start(k) or 0.0, self.end(k)
        return max(0.0, (self.duration if end is None else end) - start)

    def first_segment(self, k: int) -> int:
        return k * self.segments_per_part

    def holds(self, k: int, seconds: float) -> bool:
        start, end = self.start(k), self.end(k)
        return (start is None or seconds >= start) and (end is None or seconds < end)


Segment = tuple[str, float, int]  # file name, duration, bytes

_STREAM_FIELDS = ("codec_type", "codec_name", "profile", "level", "width", "height", "channels")


@dataclass(frozen=True)
class PartRecord:
    part: int
    fingerprint: str
    tag: str
    segments: dict[str, list[Segment]]  # rendition name -> its segments in this part
    streams: dict[str, list[dict[str, Any]]]  # rendition name -> first segment's streams
    archive: int  # bytes of the part's tar: its storyboard tiles (and the poster, if it made it)
    edges: dict[str, Edges]  # rendition name -> where the part begins and ends in it

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": RECORD_VERSION,
                "part": self.part,
                "fingerprint": self.fingerprint,
                "tag": self.tag,
                "segments": self.segments,
                "streams": self.streams,
                "archive": self.archive,
                "edges": {name: edges.to_list() for name, edges in self.edges.items()},
            },  # fmt: skip
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, renditions: list[str]) -> PartRecord:
        """A record read back from storage; ValueError for anything unexpected."""
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError("not a part record of this version")
        part, fp, tag = raw.get("part"), raw.get("fingerprint"), raw.get("tag")
        if not isinstance(part, int) or not 0 <= part < 100_000:
            raise ValueError("bad part number")
        if not (isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{32}", fp)):
            raise ValueError("bad fingerprint")
        if not (isinstance(tag, str) and re.fullmatch(r"[0-9a-z]{1,16}", tag)):
            raise ValueError("bad tag")
        segments, edges = raw.get("segments"), raw.get("edges")
        if not isinstance(segments, dict) or sorted(segments) != sorted(renditions):
            raise ValueError("renditions differ from the plan's")
        if not isinstance(edges, dict) or sorted(edges) != sorted(renditions):
            raise ValueError("edges differ from the renditions")
        return cls(
            part, fp, tag,
            {name: _segments(segments[name], name, tag) for name in renditions},
            {name: _streams(raw.get("streams", {}).get(name)) for name in renditions},
            _size(raw.get("archive")),
            {name: Edges.from_list(edges[name]) for name in renditions},
        )  # fmt: skip


def _segments(value: object, name: str, tag: str) -> list[Segment]:
    pattern = re.compile(re.escape(f"{name}_{tag}_") + r"\d{5,6}\.ts")
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name}: no segments")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError(f"{name}: bad segment entry")
        uri, seconds, size = item
        if not (isinstance(uri, str) and pattern.fullmatch(uri)):
            raise ValueError(f"{name}: bad segment name")
        if not (isinstance(seconds, (int, float)) and 0 < seconds <= 600):
            raise ValueError(f"{name}: bad segment duration")
        if not (isinstance(size, int) and 0 < size < 2**40):
            raise ValueError(f"{name}: bad segment size")
        out.append((uri, float(seconds), size))
    return out


def _streams(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [
        {k: v for k, v in s.items() if k in _STREAM_FIELDS and isinstance(v, (str, int))}
        for s in value[:4]
        if isinstance(s, dict)
    ]


def _size(value: object) -> int:
    if not isinstance(value, int) or not 0 < value < 2**32:
        raise ValueError("bad archive size")
    return value
