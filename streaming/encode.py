"""The FFmpeg stages of a job: probe the upload, encode every rendition (with
the hardware decoder, then once in software if it fails), assemble the
storyboard, write the master playlist. Each returns what it made."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streaming.errors import JobError
from streaming.ffmpeg_command import (
    EncodeOptions,
    OutputLayout,
    pick_decoder,
    sprite_commands,
    transcode_command,
)
from streaming.ffmpeg_runner import RunResult, run_ffmpeg
from streaming.hls_output import Storyboard, VariantStats, master_playlist, measure_variant
from streaming.input_feed import FEED_PLACEHOLDER, InputFeed
from streaming.ladder import Rendition
from streaming.media_probe import MediaInfo, probe, probe_output
from streaming.output_upload import OutputUploader
from streaming.progress import DOWNLOAD_SHARE, TRANSCODE_SHARE, Progress
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
        feed.wait_for_all(st.check)
        return probe(st.settings.ffprobe_bin, feed.path, st.check)


def make_output_dirs(layout: OutputLayout) -> None:
    for folder in (layout.root, layout.tiles):
        shutil.rmtree(folder, ignore_errors=True)
    layout.thumbnails.mkdir(parents=True)
    layout.tiles.mkdir()


class _CodecReader:
    """Reads each rendition's first segment's streams (for CODECS) as soon as
    FFmpeg has finished it, so during the encode rather than after it."""

    def __init__(self, st: Stage, renditions: list[Rendition]) -> None:
        self.st, self.renditions = st, renditions
        self.streams: Streams = {}

    def __call__(self) -> Streams:
        for r in self.renditions:
            first = self.st.layout.first_segment(r)
            if r.name not in self.streams and first.is_file():
                found = probe_output(self.st.settings.ffprobe_bin, first, self.st.check)
                self.streams[r.name] = found.get("streams", [])
        return self.streams


def _options(st: Stage) -> EncodeOptions:
    s = st.settings
    return EncodeOptions(
        s.x264_preset, s.x264_crf, s.audio_kbps, s.segment_seconds, s.storyboard_tile_width,
        can_tonemap={"zscale", "tonemap"} <= st.filters, x264_params=s.x264_params,
    )  # fmt: skip


def _run_encode(
    st: Stage, feed: InputFeed, info: MediaInfo, renditions: list[Rendition],
    decoder: str | None, on_progress: Callable[[float], None],
) -> RunResult:  # fmt: skip
    opts = _options(st)
    if info.hdr and not opts.can_tonemap:
        st.log.event("hdr_not_tonemapped", "warning", transfer=info.color_transfer)
    command = transcode_command(
        st.settings.ffmpeg_bin, feed.url, st.layout, info, renditions, opts, decoder
    )
    # The feed's URL is the job's only key to a private match: never logged.
    shown = [arg.replace(feed.url, FEED_PLACEHOLDER) for arg in command]
    st.log.event("ffmpeg_started", decoder=decoder or "software", command=shown)
    result = st.run(command, on_progress)
    result = replace(result, stderr_tail=result.stderr_tail.replace(feed.url, FEED_PLACEHOLDER))
    # A failed download cuts FFmpeg's reads short; that, not what FFmpeg made
    # of it, is the job's error. A run that failed while bytes were still on
    # their way is judged once the download has ended.
    feed.raise_error()
    if not result.ok:
        feed.wait_for_all(st.check)
    return result


def encode(
    st: Stage, feed: InputFeed, info: MediaInfo, renditions: list[Rendition],
    uploader: OutputUploader, progress: Progress,
) -> Encoded:  # fmt: skip
    """Every rendition, the tiles and the poster in one FFmpeg run, segments
    going up as they are finished."""
    codecs = _CodecReader(st, renditions)

    def on_progress(seconds: float) -> None:
        uploader.ship_finished_segments()
        codecs()
        progress.report(DOWNLOAD_SHARE + TRANSCODE_SHARE * min(1.0, seconds / info.duration))

    decoder = pick_decoder(info, st.decoders, st.settings.hw_decode == "auto")
    result, runs = _run_encode(st, feed, info, renditions, decoder, on_progress), 1
    if not result.ok and decoder is not None:
        st.log.event("hw_decode_failed", "warning", decoder=decoder, stderr=result.stderr_tail)
        codecs.streams.clear()
        uploader.reset()
        make_output_dirs(st.layout)
        decoder = None
        result, runs = _run_encode(st, feed, info, renditions, decoder, on_progress), 2
    if not result.ok:
        raise_for(st, result)
    st.log.event("ffmpeg_finished", seconds=round(result.seconds, 2))
    return Encoded(decoder or "software", runs, codecs())


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
    st: Stage, renditions: list[Rendition], info: MediaInfo, streams: Streams
) -> list[VariantStats]:
    variants = []
    for r in renditions:
        playlist, first = st.layout.playlist(r), st.layout.first_segment(r)
        if not playlist.is_file() or not first.is_file():
            raise JobError("FFMPEG_FAILED", f"FFmpeg wrote no {r.name} rendition")
        variant = measure_variant(r, playlist, streams.get(r.name) or [])
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
