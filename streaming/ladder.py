"""Which renditions a source gets: the adaptive ladder, never upscaled.

Rung heights name the short side, so a 1080x1920 phone clip is "1080p" just
like a 1920x1080 camera file, and its renditions stay portrait.
"""

from __future__ import annotations

from dataclasses import dataclass

from utils.config import Rung


@dataclass(frozen=True)
class Rendition:
    name: str  # e.g. "720p": also the file-name stem of its playlist and segments
    width: int
    height: int
    video_kbps: int

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The source's display size scaled so its short side is `short_side` (even)."""
    if width >= height:
        return _even(width * short_side / height), _even(short_side)
    return _even(short_side), _even(height * short_side / width)


SOURCE_RUNG_MARGIN = 1.15  # a source this much taller than the next rung keeps its size


def choose_renditions(width: int, height: int, ladder: tuple[Rung, ...]) -> list[Rendition]:
    """The rungs at or below the source's short side, tallest first.

    A source between two rungs (a 720p file with a 1080/540 ladder) also gets
    a rendition at its own size, so its resolution is not thrown away; a
    source smaller than every rung gets only that one. Such a rung's bitrate
    cap is the next taller rung's, scaled by area.
    """
    source_short = min(width, height) - min(width, height) % 2
    rungs = [r for r in ladder if r.height <= source_short]
    below = max((r.height for r in rungs), default=0)
    taller = [r for r in ladder if r.height > source_short]
    if taller and source_short > below * SOURCE_RUNG_MARGIN:
        basis = min(taller, key=lambda r: r.height)
        ratio = (source_short / basis.height) ** 2
        rungs.append(Rung(source_short, max(100, int(basis.video_kbps * ratio))))
    renditions = []
    for rung in sorted(rungs, key=lambda r: r.height, reverse=True):
        w, h = scaled_size(width, height, rung.height)
        renditions.append(Rendition(f"{rung.height}p", w, h, rung.video_kbps))
    return renditions
