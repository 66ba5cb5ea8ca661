"""The FFmpeg stages of a job around the encode (streaming/part_encode.py):
probe the upload, assemble the storyboard, write the master playlist. Each
returns what it made."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.errors import JobError
from streaming.ffmpeg_command import EncodeOptions, OutputLayout, sprite_commands
from streaming.ffmpeg_runner import RunResult, run_ffmpeg
from streaming.hls_output import Storyboard, VariantStats, master_playlist, measure_variant
from streaming.input_feed import InputFeed
from streaming.ladder import Rendition
from streaming.media_probe import MediaInfo, probe, probe_output
from streaming.parts import Segment
from utils.config import TranscoderSettings
from utils.observability import EventLog

Streams = dict[str, list[dict[str, Any]]]  # rendition -> its first segment's streams


@dataclass(frozen=True)
class Stage:
    """What every FFmpeg stage of one job works with."""

    settings: TranscoderSettings
    decoders: frozenset[str]
    filters: frozenset[str]
    layout: OutputLayout
    log: EventLog
    check: Callable[[], None]  # raises JobAborted when the job must stop now

    def run(
        self, command: list[str], on_progress: Callable[[float], None] | None = None
    ) -> RunResult:
        return run_ffmpeg(
            command,
            check=self.check,
            on_progress=on_progress or (lambda seconds: None),
            stall_seconds=self.settings.ffmpeg_stall_seconds,
        )


@dataclass(frozen=True)
class Encoded:
    decoder: str  # the decoder that made the stream ("software" or a hardware one)
    runs: int  # FFmpeg runs it took
    streams: Streams


def probe_input(st: Stage, feed: InputFeed) -> MediaInfo:
    """Probe the upload while it comes down; judged again on the whole file
    when the first bytes are not enough (not on bytes still on their way)."""
    try:
        return probe(st.settings.ffprobe_bin, feed.url, st.check)
    except JobError:
        if feed.ranged:  # (it holds only what was read: the judgement stands)
            feed.raise_error()
            raise
        feed.wait_for_all(st.check)
        return probe(st.settings.ffprobe_bin, feed.path, st.check)


def make_output_dirs(layout: OutputLayout) -> None:
    for folder in (layout.root, layout.tiles):
        shutil.rmtree(folder, ignore_errors=True)
    layout.thumbnails.mkdir(parents=True)
    layout.tiles.mkdir()


def encode_options(st: Stage) -> EncodeOptions:
    s = st.settings
    return EncodeOptions(
        s.x264_preset, s.x264_crf, s.audio_kbps, s.segment_seconds, s.storyboard_tile_width,
        can_tonemap={"zscale", "tonemap"} <= st.filters, x264_params=s.x264_params,
    )  # fmt: skip


def raise_for(st: Stage, result: RunResult) -> None:
    """A failed FFmpeg run as the job's error."""
    tail = result.stderr_tail.replace(str(st.layout.root.parent), "<job>")
    if "No space left on device" in tail:
        raise JobError("DISK_TOO_SMALL", "the work dir filled up during the transcode")
    if result.stalled:
        raise JobError(
            "FFMPEG_STALLED", f"FFmpeg made no progress for {st.settings.ffmpeg_stall_seconds}s"
        )
    last = tail.splitlines()[-3:] if tail else ["(no error output)"]
    raise JobError(
        "FFMPEG_FAILED", f"FFmpeg exited with {result.returncode}: {' | '.join(last)[:800]}"
    )


def _board(st: Stage, info: MediaInfo, tiles: list[Path]) -> Storyboard:
    interval = float(st.settings.segment_seconds)
    count = min(len(tiles), max(1, -int(-info.duration // interval)))
    first = probe_output(st.settings.ffprobe_bin, tiles[0], st.check).get("streams") or [{}]
    return Storyboard(
        count,
        interval,
        int(first[0].get("width") or st.settings.storyboard_tile_width),
        int(first[0].get("height") or 0),
        tag=st.layout.tag,
    )


def make_storyboard(st: Stage, info: MediaInfo) -> Storyboard:
    """Sprites of the tiles FFmpeg wrote, the VTT that names them, the poster."""
    layout = st.layout
    tiles = sorted(layout.tiles.glob("tile_*.jpg"))
    if not tiles:
        raise JobError("FFMPEG_FAILED", "FFmpeg wrote no storyboard frames")
    board = _board(st, info, tiles)
    for extra in tiles[board.tiles :]:
        extra.unlink()
    for command in sprite_commands(
        st.settings.ffmpeg_bin, layout, board.tiles, board.columns, board.rows
    ):
        result = st.run(command)
        if not result.ok:
            raise_for(st, result)
    layout.storyboard_vtt.write_text(board.vtt(info.duration))
    if not layout.poster.is_file():
        shutil.copyfile(tiles[0], layout.poster)
    return board


def write_master(
    st: Stage, renditions: list[Rendition], info: MediaInfo, streams: Streams,
    joined: dict[str, list[Segment]],
) -> list[VariantStats]:  # fmt: skip
    variants = []
    for r in renditions:
        if not joined.get(r.name):
            raise JobError("FFMPEG_FAILED", f"FFmpeg wrote no {r.name} rendition")
        variant = measure_variant(r, joined[r.name], streams.get(r.name) or [])
        # FFmpeg ends without an error at the first unreadable byte of a cut
        # file; a stream that stops long before the stated end is not a success.
        if variant.duration < 0.5 * info.duration:
            raise JobError(
                "INPUT_CORRUPT",
                f"the video data ends at {variant.duration:.1f}s of the "
                f"{info.duration:.1f}s the file states: truncated or corrupt upload",
            )
        variants.append(variant)
    st.layout.master.write_text(master_playlist(variants))
    return variants
