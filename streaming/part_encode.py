"""The encode of a job, part by part (streaming/parts.py): the audio track
once for the whole match (streaming/audio_track.py), then each part not
adopted from an earlier attempt in one FFmpeg run, with the hardware decoder
and once in software if that fails. Segments go up as FFmpeg finishes them;
a part is recorded (streaming/checkpoint.py) once its segments have landed.
At the end the parts' segment lists are joined into the variant playlists."""

from __future__ import annotations

import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streaming.audio_track import AudioTrack
from streaming.checkpoint import PartBook, make_archive, restore_archive
from streaming.encode import Encoded, Stage, encode_options, raise_for
from streaming.errors import JobAborted, JobError
from streaming.ffmpeg_command import (
    MAX_SEEK_MARGIN,
    SEEK_MARGIN,
    TIMELINE_OFFSET,
    PartSpan,
    mux_command,
    pick_decoder,
    poster_time,
    transcode_command,
)
from streaming.ffmpeg_runner import RunResult, run_captured
from streaming.hls_check import (
    Edges,
    StreamInvalid,
    check_join,
    check_playlist,
    check_segments,
    measured,
    read_packets,
    span_of,
)
from streaming.hls_output import media_playlist, read_media_playlist
from streaming.input_feed import FEED_PLACEHOLDER, InputFeed
from streaming.ladder import Rendition
from streaming.media_probe import MediaInfo, probe_output
from streaming.output_upload import OutputUploader
from streaming.parts import PartPlan, PartRecord, Segment
from streaming.progress import DOWNLOAD_SHARE, TRANSCODE_SHARE, Progress
from utils.storage import ObjectMissing, StorageUnavailable

if TYPE_CHECKING:
    from streaming.part_sharing import Sharing

# On a stop, how long the parts already encoded may wait for their segments
# to land and be recorded (within systemd's TimeoutStopSec=45 for the whole stop).
STOP_RECORD_SECONDS = 10.0


def plan_settings(st: Stage, renditions: list[Rendition]) -> dict[str, Any]:
    """Every setting that changes the stream's bytes: parts made under other
    settings are not joined with these (streaming/parts.py fingerprint)."""
    opts = encode_options(st)
    return {
        "renditions": [(r.name, r.width, r.height, r.video_kbps) for r in renditions],
        "preset": opts.x264_preset, "crf": opts.x264_crf, "x264": opts.x264_params,
        "audio_kbps": opts.audio_kbps, "segment": opts.segment_seconds,
        "part": st.settings.part_seconds, "tile": opts.tile_width,
        "tonemap": opts.can_tonemap, "offset": TIMELINE_OFFSET, "layout": 2,
    }  # fmt: skip


def _run_encode(
    st: Stage, feed: InputFeed, info: MediaInfo, renditions: list[Rendition],
    decoder: str | None, on_progress: Callable[[float], None], part: PartSpan,
) -> RunResult:  # fmt: skip
    opts = encode_options(st)
    command = transcode_command(
        st.settings.ffmpeg_bin, feed.url, st.layout, info, renditions, opts, decoder, part
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


class Slices(Protocol):
    """Where a part's audio slice comes from: the job's own audio track, or
    (on a part worker) the slice the job's owner shared."""

    def slice(self, k: int, check: Callable[[], None]) -> Path: ...


class Reports(Protocol):
    def report(self, fraction: float) -> None: ...


@dataclass
class Parts:
    """The state of one attempt's walk through the parts."""

    st: Stage
    feed: InputFeed
    info: MediaInfo
    renditions: list[Rendition]
    uploader: OutputUploader
    progress: Reports
    book: PartBook
    audio: Slices | None
    decoder: str | None
    runs: int = 0
    done_seconds: float = 0.0
    on_tick: Callable[[], None] = field(default=lambda: None)  # at every progress report

    def span(self, k: int, margin: float) -> PartSpan:
        plan, folder = self.book.plan, self.st.layout.part_folder(k)
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "tiles").mkdir(parents=True)
        audio = self.audio.slice(k, self.st.check) if self.audio is not None else None
        poster = plan.holds(k, poster_time(self.info.duration)) or plan.count == 1
        return PartSpan(plan.start(k), plan.end(k), plan.first_segment(k),
                        self.info.start_time, audio, folder, poster, margin)  # fmt: skip

    def report(self, k: int | None, seconds: float = 0.0) -> None:
        """Progress (with `seconds` of part k encoded): segments go up, parts
        whose segments landed are recorded."""
        self.uploader.ship_finished_segments()
        self.book.write_landed(self.uploader.landed)
        self.show(k, seconds)
        self.on_tick()

    def show(self, k: int | None, seconds: float = 0.0) -> None:
        """The job's progress: the parts done, and `seconds` of part k."""
        now = min(seconds, self.book.plan.seconds(k)) if k is not None else 0.0
        share = (self.done_seconds + now) / self.info.duration
        self.progress.report(DOWNLOAD_SHARE + TRANSCODE_SHARE * min(1.0, share))

    def adopt(self, parts: list[int]) -> None:
        """Parts recorded elsewhere: their tiles and poster come back here,
        and they count as done (one whose archive is unreadable is not adopted)."""
        for k in parts:
            try:
                restore_archive(self.book, k, self.st.layout.tiles, self.st.layout.poster)
            except (ObjectMissing, StorageUnavailable, ValueError, tarfile.TarError) as exc:
                error = str(exc)[:200]
                self.st.log.event("part_archive_unreadable", "warning", part=k, error=error)
                del self.book.adopted[k]
                continue
            self.done_seconds += self.book.plan.seconds(k)

    def encode(self, k: int) -> None:
        """Part k, with the hardware decoder and then in software if it fails
        (and in software from then on); with a wider seek margin if it lost
        its first frames (a container whose seek lands after the keyframe);
        once more if what it made fails the check, and never published if
        it fails again."""
        margin, again = SEEK_MARGIN, False
        spent = {"mux": 0.0, "check": 0.0}  # seconds, every try of the part
        while True:
            span = self.span(k, margin)
            result = self._run(k, span)
            if not result.ok and self.decoder is not None:
                self.st.log.event("hw_decode_failed", "warning", decoder=self.decoder,
                                  part=k, stderr=result.stderr_tail)  # fmt: skip
                self.decoder = None
                continue
            if not result.ok:
                raise_for(self.st, result)
            with _timed(spent, "mux"):
                self.mux(span)
            if margin < MAX_SEEK_MARGIN and self.starts_late(k, span):
                self.st.log.event("part_seek_widened", "info", part=k, margin=margin * 4)
                margin *= 4
                continue
            try:
                with _timed(spent, "check"):
                    edges, lengths = self.verify(k, span)
            except StreamInvalid as exc:
                if again:
                    raise JobError("OUTPUT_INVALID", f"part {k}: {exc}") from None
                self.st.log.event("part_invalid", "warning", part=k, error=str(exc)[:300])
                again = True
                continue
            break
        self.book.add(*finish_part(self.st, self.book, k, span, self.renditions, self.uploader,
                                   edges, lengths))  # fmt: skip
        self.done_seconds += self.book.plan.seconds(k)
        self.st.log.event("part_finished", part=k, of=self.book.plan.count,
                          seconds=round(result.seconds, 2),
                          mux_seconds=round(spent["mux"], 2),
                          check_seconds=round(spent["check"], 2))  # fmt: skip

    def mux(self, span: PartSpan) -> None:
        """Each rendition's video and the part's audio into HLS segments (no
        segments where the run made no frame: a seek past the data, a cut upload)."""
        opts = encode_options(self.st)
        for r in self.renditions:
            command = mux_command(self.st.settings.ffmpeg_bin, span, r, opts, self.st.layout)
            result = self.st.run(command)
            full = "No space left on device" in result.stderr_tail
            if not result.ok and (full or has_frames(self.st, span.video(r))):
                raise_for(self.st, result)
            span.video(r).unlink(missing_ok=True)

    def verify(
        self, k: int, span: PartSpan
    ) -> tuple[dict[str, Edges], dict[str, dict[str, float]]]:
        """Part k's segments of every rendition, read back as a player reads
        them (streaming/hls_check.py): its edges, for the joins, and each
        segment's length as measured (the playlists say that, not what the
        muxer guessed: it misjudges a variable frame rate's last segment)."""
        edges, lengths = {}, {}
        for r in self.renditions:
            names = [uri for _, uri in _listed(span, r)]
            if not names:  # (judged as a cut upload by finish_part)
                continue
            files = [span.folder / uri for uri in names]
            packets = read_packets(self.st.settings.ffprobe_bin, files, self.st.check)
            spans = [span_of(uri, found) for uri, found in zip(names, packets, strict=True)]
            lengths[r.name] = dict(zip(names, measured(spans), strict=True))
            edges[r.name] = check_segments(
                list(lengths[r.name].items()), spans, has_audio=self.info.has_audio,
                stream_starts=k == 0, stream_ends=k == self.book.plan.count - 1,
            )  # fmt: skip
        return edges, lengths

    def starts_late(self, k: int, span: PartSpan) -> bool:
        """The run sought, and its video covers less of the part than the
        part holds (to the video's end, in the last) by more than two
        frames: it lost the frames between the seek and the next keyframe."""
        end = span.end if span.end is not None else self.info.video_end
        if span.start is None or span.margin >= span.start or end <= span.start:
            return False
        covered = sum(seconds for seconds, _ in _listed(span, self.renditions[0]))
        return covered < end - span.start - 2 / max(self.info.fps, 10.0)

    def _run(self, k: int, span: PartSpan) -> RunResult:
        self.runs += 1
        return _run_encode(self.st, self.feed, self.info, self.renditions, self.decoder,
                           lambda seconds: self.report(k, seconds), span)  # fmt: skip


@contextmanager
def _timed(spent: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        spent[name] += time.monotonic() - started


def has_frames(st: Stage, video: Path) -> bool:
    """Whether a rendition's video file holds a frame (judged by ffprobe)."""
    command = [st.settings.ffprobe_bin, "-v", "error", "-protocol_whitelist", "file",
               "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0",
               f"file:{video}"]  # fmt: skip
    if not video.is_file():
        return False
    result = run_captured(command, check=st.check, timeout=120)
    counts = [line.strip() for line in result.stdout.splitlines()]
    return result.returncode == 0 and any(c.isdigit() and int(c) > 0 for c in counts)


def _listed(span: PartSpan, rendition: Rendition) -> list[tuple[float, str]]:
    """The segments a part's mux wrote of a rendition (none if it wrote no playlist)."""
    playlist = span.playlist(rendition)
    return read_media_playlist(playlist) if playlist.is_file() else []


def finish_part(
    st: Stage, book: PartBook, k: int, span: PartSpan, renditions: list[Rendition],
    uploader: OutputUploader, edges: dict[str, Edges], lengths: dict[str, dict[str, float]],
) -> tuple[PartRecord, list[str], Path]:  # fmt: skip
    """Part k's record (segments, CODECS, edges, tiles archive), its checked
    segments on their way up: the record is written once they have landed."""
    plan, layout = book.plan, st.layout
    segments: dict[str, list[Segment]] = {}
    streams: dict[str, list[dict[str, Any]]] = {}
    for r in renditions:
        listed = _listed(span, r)
        if len(listed) > plan.segments_per_part:
            raise JobError("FFMPEG_FAILED", f"part {k} wrote {len(listed)} segments, "
                           f"more than its {plan.segments_per_part}")  # fmt: skip
        for _, uri in listed:  # (checked: now they may go up)
            (span.folder / uri).replace(layout.root / uri)
        segments[r.name] = [(uri, lengths[r.name][uri], (layout.root / uri).stat().st_size)
                            for _, uri in listed]  # fmt: skip
        if listed:
            found = probe_output(st.settings.ffprobe_bin, layout.root / listed[0][1], st.check)
            streams[r.name] = found.get("streams", [])
    if not all(segments.values()) and k < plan.count - 1:
        # FFmpeg ends without an error where a cut file's data ends (as write_master judges)
        raise JobError(
            "INPUT_CORRUPT",
            f"the video data ends before {span.start or 0.0:.1f}s of the "
            f"{plan.duration:.1f}s the file states: truncated or corrupt upload",
        )
    tiles = _keep_tiles(st, plan, k, span)
    poster = [layout.poster] if span.poster and layout.poster.is_file() else []
    archive = span.folder / "part.tar"
    size = make_archive(archive, tiles + poster)
    uploader.ship_finished_segments(now=True)
    record = PartRecord(k, plan.fingerprint, plan.tag, segments, streams, size, edges)
    keys = [uploader.prefix + uri for part in segments.values() for uri, _, _ in part]
    return record, keys, archive


def _keep_tiles(st: Stage, plan: PartPlan, k: int, span: PartSpan) -> list[Path]:
    """The part's tiles whose time is inside it, moved beside the others."""
    seg, kept = st.settings.segment_seconds, []
    for tile in sorted((span.folder / "tiles").glob("tile_*.jpg")):
        at = int(tile.stem.split("_")[1]) * seg
        if plan.holds(k, at):
            kept.append(tile.replace(st.layout.tiles / tile.name))
    return kept


def encode(
    st: Stage, feed: InputFeed, info: MediaInfo, renditions: list[Rendition],
    uploader: OutputUploader, progress: Progress, book: PartBook, sharing: Sharing | None = None,
) -> Encoded:  # fmt: skip
    """Every part not adopted from an earlier attempt, each in one FFmpeg
    run, here or (with `sharing`) on whichever worker takes it; segments go
    up as they are finished, and each part is recorded once its segments
    have landed."""
    plan = book.plan
    if info.hdr and not encode_options(st).can_tonemap:
        st.log.event("hdr_not_tonemapped", "warning", transfer=info.color_transfer)
    decoder = pick_decoder(info, st.decoders, st.settings.hw_decode == "auto")
    walk = Parts(st, feed, info, renditions, uploader, progress, book, None, decoder)
    walk.adopt(sorted(book.adopted))
    if book.adopted:
        st.log.event("parts_adopted", parts=sorted(book.adopted), of=plan.count)
    todo = [k for k in range(plan.count) if k not in book.adopted]
    audio = _audio_track(st, feed, info, plan) if info.has_audio and todo else None
    walk.audio = audio
    try:
        if sharing is None:
            for k in todo:
                walk.encode(k)
        else:
            sharing.run(walk, todo)
    except JobAborted as exc:
        if not exc.lost:  # a stop: what is done is recorded before the job goes back
            book.write_when_landed(uploader.landed, STOP_RECORD_SECONDS)
        raise
    finally:
        if audio is not None:
            audio.close()
    first = book.record(0)
    st.log.event("ffmpeg_finished", parts=plan.count, runs=walk.runs)
    return Encoded(walk.decoder or "software", walk.runs, first.streams)


def _audio_track(st: Stage, feed: InputFeed, info: MediaInfo, plan: PartPlan) -> AudioTrack:
    cuts = [start for k in range(1, plan.count) if (start := plan.start(k)) is not None]
    track = AudioTrack.for_parts(
        st.settings.ffmpeg_bin, feed.url, encode_options(st), cuts, st.layout.audio,
        plan.duration, st.settings.ffmpeg_stall_seconds, feed.raise_error,
    )  # fmt: skip
    shown = [arg.replace(feed.url, FEED_PLACEHOLDER) for arg in track.command]
    st.log.event("audio_track_started", slices=len(cuts) + 1, command=shown)
    return track.start()


def join_playlists(
    st: Stage, book: PartBook, renditions: list[Rendition]
) -> dict[str, list[Segment]]:
    """Each variant playlist: the parts' segments in order, as one VOD
    playlist, once every join between two parts is checked."""
    joined: dict[str, list[Segment]] = {}
    records = [book.record(k) for k in range(book.plan.count)]
    try:
        for r in renditions:
            edged = [(rec.part, rec.edges[r.name]) for rec in records if r.name in rec.edges]
            for (k, before), (_, after) in zip(edged, edged[1:], strict=False):
                check_join(f"part {k} of {r.name}", before, after)
            joined[r.name] = [s for rec in records for s in rec.segments[r.name]]
            if joined[r.name]:
                text = media_playlist(joined[r.name])
                check_playlist(st.layout.playlist(r).name, text)
                st.layout.playlist(r).write_text(text)
    except StreamInvalid as exc:
        raise JobError("OUTPUT_INVALID", str(exc)) from None
    return joined
