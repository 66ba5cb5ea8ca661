"""One message's life: validate, claim, then the attempt's stages in a
straight line — locate the upload, download it into the input feed while
FFmpeg encodes, storyboard, master playlist, upload — and the settlement.

The attempt never writes its own end: it returns what happened (an `Event`)
and what it made (a `Report`); `fate.decide` turns that into a settlement
and `settle` applies it, success included. The resources of an attempt are
entered in one `ExitStack`; the visibility heartbeat lives in an outer one
until the settlement's SQS action.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from streaming.checkpoint import PartBook, open_book
from streaming.claim import claim
from streaming.encode import (
    Encoded,
    Stage,
    make_output_dirs,
    make_storyboard,
    probe_input,
    write_master,
)
from streaming.errors import JobAborted, JobError
from streaming.fate import Event, Happened, Policy, decide, happened_from
from streaming.ffmpeg_command import OutputLayout, new_encode_tag
from streaming.hls_output import Storyboard, VariantStats
from streaming.input_feed import InputFeed
from streaming.job_dir import job_folder
from streaming.job_record import Attempts
from streaming.ladder import Rendition, choose_renditions
from streaming.media_probe import MediaInfo
from streaming.messages import TranscodeRequest, parse_message
from streaming.output_upload import OutputUploader
from streaming.part_encode import encode, join_playlists, plan_settings
from streaming.part_sharing import Sharing
from streaming.parts import PartPlan, Segment, fingerprint
from streaming.progress import DOWNLOAD_SHARE, TRANSCODE_SHARE, Progress
from streaming.services import Services
from streaming.settle import Report, Target, policy_of, settle
from streaming.upload_source import upload_location
from utils.media_paths import media_prefix, streaming_prefix
from utils.observability import EventLog
from utils.sqs_queue import Message
from utils.states import AssetStage, AssetStatus
from utils.storage import ObjectMissing, ObjectStat
from utils.visibility_heartbeat import VisibilityHeartbeat

T = TypeVar("T")


@dataclass(frozen=True)
class JobContext:
    """Who and what one attempt is for; nothing in it changes during the attempt."""

    services: Services
    message: Message
    request: TranscodeRequest
    target: Target
    attempts: Attempts
    log: EventLog

    @property
    def job_dir(self) -> Path:
        return self.services.settings.work_dir / self.request.job_id

    @property
    def prefix(self) -> str:
        return streaming_prefix(self.request.org_id, self.request.media_id)


@dataclass(frozen=True)
class Source:
    bucket: str
    key: str
    stat: ObjectStat

    @property
    def size(self) -> int:
        return self.stat.size


@dataclass
class _Made:
    """What the attempt has made so far: read by its settlement, even after a failure."""

    bucket: str = ""
    upload: dict[str, Any] | None = None  # the upload's identity, once seen
    uploader: OutputUploader | None = None
    book: PartBook | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def report(self) -> Report:
        """What a permanent failure removes: this attempt's uploads, and the
        parts (segments and records) it adopted or recorded."""
        written = self.uploader.written_keys() if self.uploader else ()
        parts = self.book.keys() if self.book else ()
        return Report(bucket=self.bucket, written=(*written, *parts), upload=self.upload)


def handle_message(services: Services, message: Message, log: EventLog) -> str:
    """Everything for one received message, its settlement included; returns
    the outcome as applied."""
    policy = policy_of(services.settings)
    try:
        request = parse_message(message.body)
    except JobError as exc:
        plan = decide(
            Event(Happened.REJECTED, exc.code, exc.message), message.receive_count, policy
        )
        return settle(plan, message, None, Report(), services, log)
    log = log.bind(job_id=request.job_id, media_id=request.media_id)
    held = claim(services, request, message, policy)
    if held.event is not None:
        plan = decide(held.event, message.receive_count, policy)
        return settle(plan, message, held.target, Report(asset=held.repair), services, log)
    assert held.target is not None
    log = log.bind(attempt=held.target.attempt)
    ctx = JobContext(services, message, request, held.target, held.attempts, log)
    return run_job(ctx, policy)


def run_job(ctx: JobContext, policy: Policy) -> str:
    with ExitStack() as outer:  # holds the heartbeat through the settlement's writes
        event, report = _attempt(ctx, outer)
        plan = decide(event, ctx.message.receive_count, policy)
        return settle(
            plan, ctx.message, ctx.target, report, ctx.services, ctx.log, before_sqs=outer.close
        )


def _attempt(ctx: JobContext, outer: ExitStack) -> tuple[Event, Report]:
    made = _Made()
    started = time.monotonic()
    ctx.log.event("job_started", receive_count=ctx.message.receive_count)
    try:
        with ExitStack() as stack:
            report = _stages(ctx, outer, stack, made)
        ctx.log.event("job_succeeded", seconds=round(time.monotonic() - started, 2))
        return Event(Happened.SUCCEEDED, attempts=ctx.attempts), report
    except Exception as exc:  # every end of an attempt is an Event; fate decides
        if not isinstance(exc, (JobError, JobAborted)):
            ctx.log.event("worker_exception", "warning", traceback=traceback.format_exc()[-3000:])
        return happened_from(exc, ctx.attempts), made.report()


class Guard:
    """The check every long stage calls every fraction of a second: feeds
    systemd's watchdog and status line, renews the lease, and raises
    JobAborted when the job must stop now."""

    def __init__(self, ctx: JobContext, progress: Progress, heartbeat: VisibilityHeartbeat) -> None:
        self.ctx, self.progress, self.heartbeat = ctx, progress, heartbeat
        self.stage = "starting"

    def __call__(self) -> None:
        services = self.ctx.services
        services.notifier.watchdog()
        fraction = int(self.progress.fraction * 100)
        services.notifier.status(f"job {self.ctx.request.job_id[:8]}: {self.stage} {fraction}%")
        if services.stop.is_set():
            raise JobAborted("worker is shutting down", lost=False)
        if self.heartbeat.lost.is_set():
            raise JobAborted(f"message lost: {self.heartbeat.lost_reason}", lost=True)
        if not self.progress.flush():
            raise JobAborted("another worker took the job over", lost=True)

    def timed(self, made: _Made, stage: str, work: Callable[[], T]) -> T:
        started = time.monotonic()
        self.stage = stage
        self.ctx.log.event("stage_started", stage=stage)
        result = work()
        made.timings[stage] = round(time.monotonic() - started, 3)
        self.ctx.log.event("stage_finished", stage=stage, seconds=made.timings[stage])
        return result


@dataclass(frozen=True)
class _Prepared:
    source: Source
    guard: Guard
    progress: Progress
    stage: Stage
    uploader: OutputUploader
    feed: InputFeed


def _prepare(ctx: JobContext, outer: ExitStack, stack: ExitStack, made: _Made) -> _Prepared:
    services, settings = ctx.services, ctx.services.settings
    source = locate_input(ctx)
    made.bucket, made.upload = source.bucket, source.stat.identity()
    progress = Progress(services.db, ctx.target, settings.progress_write_seconds, ctx.log)
    if not progress.flush(force=True):  # the asset shows `transcoding` from now on
        raise JobAborted("another worker took the job over", lost=True)
    heartbeat = outer.enter_context(visibility_heartbeat(ctx, source.size))
    guard = Guard(ctx, progress, heartbeat)
    need = int(source.size * settings.disk_space_factor) + settings.disk_reserve_bytes
    job_dir = stack.enter_context(job_folder(ctx.job_dir, need))
    layout = OutputLayout(job_dir / "out", new_encode_tag())
    make_output_dirs(layout)
    made.uploader = stack.enter_context(
        _closing_uploader(OutputUploader(services.storage, source.bucket, layout.root, ctx.prefix))
    )
    feed = stack.enter_context(closing(InputFeed(job_dir / "source", source.size)))
    stage = Stage(settings, services.decoders, services.filters, layout, ctx.log, guard)
    return _Prepared(source, guard, progress, stage, made.uploader, feed)


def _stages(ctx: JobContext, outer: ExitStack, stack: ExitStack, made: _Made) -> Report:
    p = _prepare(ctx, outer, stack, made)
    p.guard.timed(made, "download", lambda: start_download(ctx, p))
    info = probe_input(p.stage, p.feed)
    ctx.log.event("input_probed", **info.__dict__)
    renditions = choose_renditions(info.width, info.height, ctx.services.settings.ladder)
    book = made.book = open_parts(ctx, p, info, renditions)
    stage = p.stage
    names = [r.name for r in renditions]
    sharing = Sharing.open(ctx.services, ctx.request, book, names, ctx.log)
    encoded = p.guard.timed(
        made,
        "transcode",
        lambda: encode(stage, p.feed, info, renditions, p.uploader, p.progress, book, sharing),
    )
    if p.feed.seconds is not None:  # (the transcode ran while it came down)
        made.timings["download_total"] = p.feed.seconds
        ctx.log.event("input_downloaded", seconds=p.feed.seconds, input_bytes=p.source.size)
    p.feed.close()
    p.feed.path.unlink(missing_ok=True)  # free the disk before the upload
    joined = join_playlists(stage, book, renditions)
    p.uploader.ship_finished_segments(ffmpeg_done=True)
    board = p.guard.timed(made, "storyboard", lambda: make_storyboard(stage, info))
    variants = write_master(stage, renditions, info, encoded.streams, joined)
    p.progress.report(p.progress.fraction, AssetStage.TRANSCODED)
    output_bytes = p.guard.timed(made, "upload", lambda: upload_outputs(ctx, p, book, joined))
    summary = _Summary(
        info, variants, board, encoded, made.timings, p.source.size, output_bytes, stage.layout
    )
    return success_report(ctx, made, summary, book)


def open_parts(
    ctx: JobContext, p: _Prepared, info: MediaInfo, renditions: list[Rendition]
) -> PartBook:
    """The job's parts, with those an earlier attempt (or another worker)
    recorded for the same upload and settings."""
    settings = ctx.services.settings
    plan = PartPlan(
        fingerprint(p.source.stat.identity(), plan_settings(p.stage, renditions)),
        p.stage.layout.tag, 0.0, settings.part_seconds,
        settings.segment_seconds, info.duration,
    )  # fmt: skip
    folder = media_prefix(ctx.request.org_id, ctx.request.media_id)
    names = [r.name for r in renditions]
    return open_book(ctx.services.storage, p.source.bucket, folder, plan, names, ctx.log)


def locate_input(ctx: JobContext) -> Source:
    """The upload's bucket, key and identity, refused unless it is inside the
    video's own folder in BUCKET_NAME."""
    request, settings = ctx.request, ctx.services.settings
    asset = ctx.services.db.get_asset(request.media_id)
    bucket, key = upload_location(asset, request, settings.common.bucket_name)
    try:
        stat = ctx.services.storage.stat(bucket, key)
    except ObjectMissing:
        raise JobError("INPUT_NOT_FOUND", f"the upload is not in storage: {key}") from None
    if stat.size == 0:
        raise JobError("INPUT_UNSUPPORTED", "the upload is empty (0 bytes)")
    return Source(bucket, key, stat)


@contextmanager
def visibility_heartbeat(ctx: JobContext, size: int) -> Iterator[VisibilityHeartbeat]:
    """The message kept invisible while the job runs: one extension at once,
    then one every interval. (Not a longer first visibility for a bigger
    upload: that would only delay the recovery from an early crash.)"""
    settings = ctx.services.settings
    visibility = settings.heartbeat_extension_seconds
    ctx.services.queue.set_visibility(ctx.message, visibility)
    ctx.log.event("visibility_set", seconds=visibility, input_bytes=size)
    with VisibilityHeartbeat(
        ctx.services.queue,
        ctx.message,
        visible_until=time.monotonic() + visibility,
        interval=settings.heartbeat_interval_seconds,
        extension=settings.heartbeat_extension_seconds,
        log=ctx.log,
    ) as heartbeat:
        yield heartbeat


@contextmanager
def _closing_uploader(uploader: OutputUploader) -> Iterator[OutputUploader]:
    try:
        yield uploader
    finally:
        uploader.close(cancel=True)


def start_download(ctx: JobContext, p: _Prepared) -> None:
    """Start the download and wait only until FFmpeg can start reading: the
    rest comes down while it encodes (streaming/input_feed.py)."""
    p.feed.start(ctx.services.storage, p.source.bucket, p.source.key)

    def check() -> None:
        p.progress.report(DOWNLOAD_SHARE * min(1.0, p.feed.landed_bytes() / max(p.source.size, 1)))
        p.guard()

    p.feed.wait_for_start(check)


def upload_outputs(
    ctx: JobContext, p: _Prepared, book: PartBook, joined: dict[str, list[Segment]]
) -> int:
    """The rest of the stream, the master playlist last, once every segment
    the variants name is in storage as recorded; then what an earlier,
    unfinished attempt left in the folder goes, and the parts' records.
    Returns the bytes uploaded."""
    total = p.uploader.total_bytes() or 1
    share = DOWNLOAD_SHARE + TRANSCODE_SHARE

    def check() -> None:
        p.progress.report(share + (1 - share) * min(1.0, p.uploader.bytes_sent / total))
        book.write_landed(p.uploader.landed)
        p.guard()

    def stored() -> None:
        listed = book.stored_stream()
        for name, segments in joined.items():
            for uri, _, size in segments:
                if listed.get(p.uploader.prefix + uri) != size:
                    raise JobError("OUTPUT_INVALID", f"{name}: {uri} is not in storage whole")

    written = p.uploader.finish(check, stored)
    p.guard()  # still ours: only then may stale objects go
    removed = p.uploader.remove_except(set(written) | book.stream_keys())
    if removed:
        ctx.log.event("stale_outputs_removed", removed=removed)
    book.clear()
    return total


@dataclass(frozen=True)
class _Summary:
    info: MediaInfo
    variants: list[VariantStats]
    board: Storyboard
    encoded: Encoded
    timings: dict[str, float]
    input_bytes: int
    output_bytes: int
    layout: OutputLayout


def success_report(ctx: JobContext, made: _Made, s: _Summary, book: PartBook) -> Report:
    """The rows a success writes: the asset's fields and the job's summary."""
    thumbs = ctx.prefix + "thumbnails/"
    asset = {
        "status": AssetStatus.READY.value,
        "processing_stage": AssetStage.COMPLETE.value,
        "transcode_progress": 100,
        "streaming_ready": True,
        "duration_seconds": round(s.info.duration, 3),
        "thumbnail_path": thumbs + s.layout.poster.name,
        "thumbnail_sprite_path": thumbs + s.board.sprite_name(0),
        "thumbnail_vtt_path": thumbs + s.layout.storyboard_vtt.name,
        "thumbnail_frame_count": s.board.tiles,
        "thumbnail_interval_seconds": s.board.interval,
        "thumbnail_width": s.board.tile_width,
        "thumbnail_height": s.board.tile_height,
    }
    result = _result(ctx, s) | {"parts": book.plan.count, "parts_adopted": sorted(book.adopted)}
    return Report(made.bucket, made.report().written, result, asset)


def _result(ctx: JobContext, s: _Summary) -> dict[str, Any]:
    info = s.info
    return {
        "renditions": [v.summary() for v in s.variants],
        "duration_seconds": round(info.duration, 3),
        "source": {
            "width": info.width,
            "height": info.height,
            "codec": info.video_codec,
            "fps": round(info.fps, 3),
            "has_audio": info.has_audio,
        },  # fmt: skip
        "decoder": s.encoded.decoder,
        "worker": ctx.services.settings.common.worker_name,
        "timings": s.timings,
        "input_bytes": s.input_bytes,
        "output_bytes": s.output_bytes,
        "storyboard": {"frames": s.board.tiles, "sprites": s.board.sprites},
        "ffmpeg_runs": s.encoded.runs,
    }
