"""One part of another worker's job, taken from the part queue.

The message names the job and the part, and the plan's fingerprint. Nothing
in it is trusted: the upload's place comes from the asset row, checked as a
job's is (streaming/upload_source.py); the part is done only while the job's
owner still shares that plan (`shared.json`, streaming/checkpoint.py), and
only if this worker's own settings make the same plan, so that its segments
join the owner's. The upload is read through a ranged input feed: the file's
index and the part's span, not the whole match.

The part gets its own visibility heartbeat, its own encode tag (its segment
names are its alone) and its own work dir. Its end:

- recorded (or found recorded already, or no longer wanted): the message is
  deleted;
- the worker stops: a fresh copy goes back on the queue, and the message is
  deleted (a stop costs the part none of its receives);
- the lease is lost: nothing (the message is someone else's by now);
- a transient failure: the message comes back after a short while;
- a permanent failure: the part's segments are removed, the part is marked
  failed for the owner (which encodes it itself, and so reports the job's
  real error), and the message is deleted.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from streaming.checkpoint import PartBook, part_key, read_shared
from streaming.encode import Stage, make_output_dirs, probe_input
from streaming.errors import JobAborted, JobError
from streaming.ffmpeg_command import OutputLayout, new_encode_tag, pick_decoder
from streaming.input_feed import InputFeed
from streaming.job_dir import job_folder
from streaming.ladder import choose_renditions
from streaming.media_probe import MediaInfo
from streaming.messages import PartRequest, parse_part_message
from streaming.output_upload import OutputUploader
from streaming.part_encode import Parts, plan_settings
from streaming.parts import PartPlan, fingerprint
from streaming.services import Services
from streaming.upload_source import upload_location
from utils.config import TranscoderSettings
from utils.media_paths import media_prefix, streaming_prefix
from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, ReceiptInvalid, WorkQueue
from utils.storage import ObjectMissing, StorageUnavailable, StoredObject
from utils.supabase_db import DatabaseUnavailable
from utils.visibility_heartbeat import VisibilityHeartbeat

MiB = 1024 * 1024


class _Elsewhere(Exception):
    """This worker cannot make the part as the plan wants it (other settings)."""


class _Unreported:
    """A part worker writes no progress: the job's owner does."""

    def report(self, fraction: float) -> None:
        pass


class _SharedSlice:
    """The part's audio slice, as the job's owner shared it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def slice(self, k: int, check: Callable[[], None]) -> Path:
        return self.path


class PartGuard:
    """A part's check: the watchdog, the stop flag, the part's own lease,
    and the check of the job this worker owns meanwhile, if any."""

    def __init__(
        self, services: Services, heartbeat: VisibilityHeartbeat, outer: Callable[[], None]
    ) -> None:
        self.services, self.heartbeat, self.outer = services, heartbeat, outer

    def __call__(self) -> None:
        self.services.notifier.watchdog()
        if self.services.stop.is_set():
            raise JobAborted("worker is shutting down", lost=False)
        if self.heartbeat.lost.is_set():
            raise JobAborted(f"part message lost: {self.heartbeat.lost_reason}", lost=True)
        self.outer()


def handle_part(
    services: Services, message: Message, log: EventLog, outer: Callable[[], None] = lambda: None
) -> str:
    """Everything for one part message, its end included; returns the outcome."""
    queue = services.parts_queue
    assert queue is not None
    try:
        request = parse_part_message(message.body)
    except JobError as exc:
        log.event("part_message_rejected", "error", code=exc.code, error=exc.message)
        return delete_message(queue, message, log, "rejected")
    log = log.bind(job_id=request.job_id, media_id=request.media_id, part=request.part)
    settings = services.settings
    started = time.monotonic()
    log.event("part_started", receive_count=message.receive_count)
    heartbeat = hold(queue, message, settings, log)
    if heartbeat is None:
        return "lost"
    with heartbeat:
        guard = PartGuard(services, heartbeat, outer)
        try:
            outcome = _encode_part(services, request, guard, log)
        except JobAborted as exc:
            if heartbeat.lost.is_set():
                return "lost"
            heartbeat.stop()
            log.event("part_handed_back", "info", reason=exc.reason)
            return hand_back(queue, message, log)
        except _Elsewhere as exc:
            log.event("part_left_to_others", "warning", reason=str(exc))
            return release(queue, message, settings.retry_backoff_seconds, log)
        except JobError as exc:
            if not exc.permanent:
                log.event("part_failed", "warning", code=exc.code, error=exc.message[:500])
                return release(queue, message, settings.retry_backoff_seconds, log)
            log.event("part_failed", "error", code=exc.code, error=exc.message[:500])
            outcome = "failed"
        except (StorageUnavailable, DatabaseUnavailable, QueueUnavailable) as exc:
            log.event("part_failed", "warning", code="TRANSIENT", error=str(exc)[:500])
            return release(queue, message, settings.retry_backoff_seconds, log)
        except Exception:  # noqa: BLE001 - one bad part never ends the daemon
            log.event("part_crashed", "error", traceback=traceback.format_exc()[-3000:])
            return release(queue, message, settings.retry_backoff_seconds, log)
    log.event("part_ended", outcome=outcome, seconds=round(time.monotonic() - started, 2))
    return delete_message(queue, message, log, outcome)


def _encode_part(services: Services, request: PartRequest, guard: PartGuard, log: EventLog) -> str:
    settings, storage = services.settings, services.storage
    bucket, key = upload_location(
        services.db.get_asset(request.media_id), request, settings.common.bucket_name
    )
    folder = media_prefix(request.org_id, request.media_id)
    shared = read_shared(storage, bucket, folder, log)
    if shared is None or shared.fingerprint != request.fingerprint:
        return "stale"  # the job is done, failed, or started over with another plan
    mode = shared.published.get(request.part)
    if mode is None:
        return "stale"
    try:
        storage.stat(bucket, part_key(folder, request.part, "json"))
        return "already_recorded"  # (another worker's copy of the message got there first)
    except ObjectMissing:
        pass
    try:
        stat = storage.stat(bucket, key)
    except ObjectMissing:
        return "stale"  # (the owner reports the upload missing)
    need = int(stat.size * settings.disk_space_factor / shared.count) + settings.disk_reserve_bytes
    work = settings.work_dir / f"part-{request.job_id}-{request.part:05d}"
    with job_folder(work, need) as job_dir:
        layout = OutputLayout(job_dir / "out", new_encode_tag())
        make_output_dirs(layout)
        st = Stage(settings, services.decoders, services.filters, layout, log, guard)
        with closing(InputFeed(job_dir / "source", stat.size)) as feed:
            feed.start_ranged(storage, bucket, key)
            feed.wait_for_start(guard)
            info = _probe(st, feed, (bucket, key, json.dumps(stat.identity(), default=str)))
            renditions = choose_renditions(info.width, info.height, settings.ladder)
            made = fingerprint(stat.identity(), plan_settings(st, renditions))
            if made != request.fingerprint:
                raise _Elsewhere("this worker's settings or the upload differ from the plan's")
            plan = PartPlan(made, layout.tag, 0.0, settings.part_seconds,
                            settings.segment_seconds, info.duration)  # fmt: skip
            if plan.count != shared.count or request.part >= plan.count:
                raise _Elsewhere("the plan's parts differ")
            book = PartBook(storage, bucket, folder, plan, log)
            audio = _audio(book, request.part, mode, job_dir, settings.part_seconds, guard)
            uploader = OutputUploader(
                storage, bucket, layout.root, streaming_prefix(request.org_id, request.media_id)
            )
            decoder = pick_decoder(info, services.decoders, settings.hw_decode == "auto")
            walk = Parts(st, feed, info, renditions, uploader, _Unreported(), book, audio, decoder)
            try:
                walk.encode(request.part)
                uploader.batch.wait(guard)
                book.write_landed(uploader.landed)
                if request.part not in book.recorded:
                    raise StorageUnavailable("the part's record could not be written")
                log.event("part_input_read", fetched_bytes=feed.fetched, input_bytes=stat.size)
                if _still_shared(book, request):
                    return "recorded"
                _remove(book, uploader.written_keys(), [book.key(request.part, s)
                                                        for s in ("json", "tar")])  # fmt: skip
                return "stale"
            except JobError as exc:
                if exc.permanent:
                    _remove(book, uploader.written_keys(), [])
                    marker = json.dumps({"code": exc.code, "error": exc.message[:500]}).encode()
                    book.put(book.key(request.part, "failed"), marker, "application/json")
                raise
            finally:
                uploader.close(cancel=True)


_PROBED: dict[tuple[str, str, str], MediaInfo] = {}  # upload -> its probe, for its next parts
_PROBES_KEPT = 4


def _probe(st: Stage, feed: InputFeed, upload: tuple[str, str, str]) -> MediaInfo:
    """The upload's probe: a worker that takes several parts of one match
    probes it once (over a ranged feed the probe reads megabytes)."""
    info = _PROBED.get(upload)
    if info is None:
        info = probe_input(st, feed)
        _PROBED[upload] = info
        while len(_PROBED) > _PROBES_KEPT:
            del _PROBED[next(iter(_PROBED))]
    return info


def _audio(
    book: PartBook, k: int, mode: str, job_dir: Path, part_seconds: int, check: Callable[[], None]
) -> _SharedSlice | None:
    """The part's audio as the owner shared it: its slice, or none."""
    if mode == "none":
        return None
    check()
    limit = part_seconds * 512 * 1000 // 8 * 2 + MiB  # the most AAC a part may hold, twice
    try:
        data = book.storage.read_small(book.bucket, book.key(k, "nut"), limit)
    except (ObjectMissing, ValueError) as exc:
        raise StorageUnavailable(f"the part's audio slice is not readable: {exc}") from None
    path = job_dir / f"slice_{k:05d}.nut"
    path.write_bytes(data)
    return _SharedSlice(path)


def _still_shared(book: PartBook, request: PartRequest) -> bool:
    shared = book.read_shared()
    return shared is not None and shared.fingerprint == request.fingerprint


def _remove(book: PartBook, written: tuple[str, ...], records: list[str]) -> None:
    """This run's segments (and records), which no stream will ever name."""
    keys = [StoredObject(k) for k in (*written, *records)]
    try:
        for start in range(0, len(keys), 1000):
            book.storage.delete_objects(book.bucket, keys[start : start + 1000])
    except StorageUnavailable as exc:
        book.log.event("part_outputs_not_removed", "warning", error=str(exc)[:200])


def hold(
    queue: WorkQueue, message: Message, settings: TranscoderSettings, log: EventLog
) -> VisibilityHeartbeat | None:
    """A part message made invisible for one extension, with its heartbeat
    (to be entered); None if the message is no longer ours."""
    try:
        queue.set_visibility(message, settings.heartbeat_extension_seconds)
    except (QueueUnavailable, ReceiptInvalid) as exc:
        log.event("part_not_held", "warning", error=str(exc)[:300])
        return None
    return VisibilityHeartbeat(
        queue, message, visible_until=time.monotonic() + settings.heartbeat_extension_seconds,
        interval=settings.heartbeat_interval_seconds,
        extension=settings.heartbeat_extension_seconds, log=log,
    )  # fmt: skip


def delete_message(queue: WorkQueue, message: Message, log: EventLog, outcome: str) -> str:
    try:
        queue.delete(message)
    except (QueueUnavailable, ReceiptInvalid) as exc:
        log.event("part_message_not_deleted", "warning", error=str(exc)[:300])
    return outcome


def release(queue: WorkQueue, message: Message, delay: int, log: EventLog) -> str:
    """Visible again after `delay` seconds (for another worker, or a later try)."""
    try:
        queue.set_visibility(message, delay)
    except (QueueUnavailable, ReceiptInvalid) as exc:
        log.event("part_message_not_released", "warning", error=str(exc)[:300])
    return "released"


def hand_back(queue: WorkQueue, message: Message, log: EventLog) -> str:
    """A fresh copy back on the queue, then the message deleted: a stop costs
    the part none of its receives."""
    try:
        queue.send(message.body)
    except QueueUnavailable as exc:  # it comes back on its own once its visibility ends
        log.event("part_not_handed_back", "warning", error=str(exc)[:300])
        return "stopped"
    return delete_message(queue, message, log, "stopped")
