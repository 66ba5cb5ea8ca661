"""One message's life: validate, claim, download, transcode, upload, record.

`process_message` never raises: every path ends in an `Outcome` that
`outcome.settle` turns into DB writes and an SQS action. The job's stages,
in order, are the methods of `ClaimedJob`.
"""

from __future__ import annotations

import fcntl
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from streaming.errors import JobAborted, JobError
from streaming.ffmpeg_command import (
    EncodeOptions,
    OutputLayout,
    pick_decoder,
    sprite_commands,
    transcode_command,
)
from streaming.ffmpeg_runner import RunResult, run_ffmpeg
from streaming.hls_output import Storyboard, VariantStats, master_playlist, measure_variant
from streaming.input_feed import InputFeed
from streaming.job_claim import Lease, claim
from streaming.ladder import Rendition, choose_renditions
from streaming.media_probe import MediaInfo, probe, probe_output
from streaming.messages import TranscodeRequest, parse_message
from streaming.outcome import Kind, Outcome
from streaming.output_upload import OutputUploader
from streaming.retry_policy import visibility_for_size
from streaming.services import Services
from utils.media_paths import UnsafeKey, canonical_uuid, raw_upload_key, streaming_prefix
from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, ReceiptInvalid
from utils.storage import ObjectMissing, StorageUnavailable
from utils.supabase_db import DatabaseRejected, DatabaseUnavailable, utc_now
from utils.visibility_heartbeat import VisibilityHeartbeat

FINAL_WRITE_RETRY_DELAYS = (2, 5, 15)
# Share of the overall progress bar per stage: download, transcode, upload.
DOWNLOAD_SHARE, TRANSCODE_SHARE = 0.10, 0.80


def clean_work_dir(work_dir: Path, log: EventLog) -> int:
    """Remove job folders left by a crash; a folder another live process holds stays."""
    removed = 0
    if not work_dir.is_dir():
        return 0
    for entry in work_dir.iterdir():
        if not entry.is_dir() or canonical_uuid(entry.name) != entry.name:
            continue  # only folders this worker could have made
        try:
            with open(entry / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except BlockingIOError:
            continue
        except OSError as exc:
            log.event("workdir_cleanup_failed", "warning", path=str(entry), error=str(exc))
    if removed:
        log.event("workdir_leftovers_removed", "info", folders=removed)
    return removed


def process_message(services: Services, message: Message, log: EventLog) -> Outcome:
    """Everything for one received message, up to (not including) settling it."""
    try:
        request = parse_message(message.body)
    except JobError as exc:
        return Outcome(Kind.REJECTED, exc.code, exc.message)
    held = claim(services, request, message)
    if isinstance(held, Outcome):
        return held
    job_log = log.bind(job_id=request.job_id, media_id=request.media_id, attempt=held)
    return ClaimedJob(services, message, request, held, job_log).run()


class ClaimedJob:
    def __init__(
        self,
        services: Services,
        message: Message,
        request: TranscodeRequest,
        attempt: int,
        log: EventLog,
    ) -> None:
        self.s = services
        self.settings = services.settings
        self.message = message
        self.request = request
        self.attempt = attempt
        self.log = log
        self.lease = Lease(services, request.job_id, attempt, request.media_id)
        self.heartbeat: VisibilityHeartbeat | None = None
        self.job_dir = self.settings.work_dir / request.job_id
        self.layout = OutputLayout(self.job_dir / "out")
        self.timings: dict[str, float] = {}
        self.ffmpeg_runs = 0
        self.bucket = ""
        self.output_bytes = 0
        self.stage = "starting"
        self.uploader: OutputUploader | None = None
        self.feed: InputFeed | None = None
        self.codecs: dict[str, list[dict[str, Any]]] = {}  # rendition -> first segment's streams
        self._lock: TextIO | None = None

    # --- the state decided in one place ---------------------------------------

    def _outcome(self, kind: Kind, code: str | None = None, message: str = "") -> Outcome:
        return Outcome(
            kind, code, message, job_id=self.request.job_id,
            media_id=self.request.media_id, attempt=self.attempt,
        )  # fmt: skip

    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            self.log.event("job_started", receive_count=self.message.receive_count)
            result = self._run()
            self.log.event("job_succeeded", seconds=round(time.monotonic() - started, 2))
            return result
        except JobError as exc:
            if exc.permanent:
                self._discard_outputs()
            return self._outcome(
                Kind.FAILED if exc.permanent else Kind.RETRY, exc.code, exc.message
            )
        except JobAborted as exc:
            return self._outcome(Kind.LOST if exc.lost else Kind.STOPPED, None, exc.reason)
        except ReceiptInvalid as exc:
            return self._outcome(Kind.LOST, None, f"message no longer ours: {exc}")
        except StorageUnavailable as exc:
            return self._outcome(Kind.RETRY, "STORAGE_UNAVAILABLE", str(exc))
        except (DatabaseUnavailable, DatabaseRejected) as exc:
            return self._outcome(Kind.RETRY, "DATABASE_UNAVAILABLE", str(exc))
        except QueueUnavailable as exc:
            return self._outcome(Kind.RETRY, "QUEUE_UNAVAILABLE", str(exc))
        except Exception as exc:  # a bug must not kill the daemon; the receive cap ends it
            self.log.event("worker_exception", "warning", traceback=traceback.format_exc()[-3000:])
            return self._outcome(Kind.RETRY, "WORKER_ERROR", f"{type(exc).__name__}: {exc}")
        finally:
            if self.feed is not None:
                self.feed.close()
            if self.uploader is not None:
                self.uploader.close(cancel=True)
            if self.heartbeat is not None:
                self.heartbeat.stop()
            self._remove_job_dir()

    def _discard_outputs(self) -> None:
        """A job that failed for good leaves no segments behind in storage."""
        if self.uploader is None or not self.uploader.shipped:
            return
        self.uploader.close(cancel=True)
        try:
            removed = self.uploader.remove_except(set())
            self.log.event("partial_outputs_removed", removed=removed)
        except StorageUnavailable as exc:
            self.log.event("discard_outputs_failed", "warning", error=str(exc)[:200])

    def check(self) -> None:
        """Raise JobAborted when the job must stop now; renew the lease.

        Called every fraction of a second by every long stage, so it also
        feeds systemd's watchdog and keeps `systemctl status` current."""
        self.s.notifier.watchdog()
        self.s.notifier.status(
            f"job {self.request.job_id[:8]}: {self.stage} {int(self.lease.fraction * 100)}%"
        )
        if self.s.stop.is_set():
            raise JobAborted("worker is shutting down", lost=False)
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise JobAborted(f"message lost: {self.heartbeat.lost_reason}", lost=True)
        self.lease.advance(self.lease.fraction, self.log)
        if self.lease.lost:
            raise JobAborted("another worker took the job over", lost=True)

    # --- stages -------------------------------------------------------------------

    def _run(self) -> Outcome:
        key, size = self._locate_input()
        self.uploader = OutputUploader(
            self.s.storage, self.bucket, self.layout.root,
            streaming_prefix(self.request.org_id, self.request.media_id),
        )  # fmt: skip
        self._start_heartbeat(size)
        self._prepare_job_dir(size)
        self.feed = InputFeed(self.job_dir / "source", size)
        self._timed("download", lambda: self._start_download(key, size))
        info = self._probe(self.feed)
        self.log.event("input_probed", **info.__dict__)
        renditions = choose_renditions(info.width, info.height, self.settings.ladder)
        decoder = self._timed("transcode", lambda: self._transcode(self.feed, info, renditions))
        if self.feed.seconds is not None:  # (the transcode ran while it came down)
            self.timings["download_total"] = self.feed.seconds
            self.log.event("input_downloaded", seconds=self.feed.seconds, input_bytes=size)
        self.feed.close()
        self.feed.path.unlink(missing_ok=True)  # free the disk before the upload
        self.uploader.ship_finished_segments(ffmpeg_done=True)
        storyboard = self._timed("storyboard", lambda: self._storyboard(info))
        variants = self._write_master(renditions, info)
        self._set_asset({"processing_stage": "transcoded"})
        self._timed("upload", self._upload)
        self._record_success(info, variants, storyboard, decoder, size)
        return self._outcome(Kind.SUCCEEDED)

    def _timed(self, stage: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        self.stage = stage
        self.log.event("stage_started", stage=stage)
        result = work()
        self.timings[stage] = round(time.monotonic() - started, 3)
        self.log.event("stage_finished", stage=stage, seconds=self.timings[stage])
        return result

    def _set_asset(self, fields: dict[str, Any]) -> None:
        self.s.db.update_asset(self.request.media_id, fields)

    def _locate_input(self) -> tuple[str, int]:
        asset = self.s.db.get_asset(self.request.media_id)
        if asset is None:
            raise JobError("ASSET_NOT_FOUND", "no media_assets row for the job's media_id")
        if canonical_uuid(asset.get("org_id")) != self.request.org_id:
            raise JobError("JOB_MISMATCH", "the media asset belongs to another organisation")
        try:
            key = raw_upload_key(
                asset.get("storage_path"), self.request.org_id, self.request.media_id
            )
        except UnsafeKey as exc:
            raise JobError("INPUT_INVALID_KEY", str(exc)) from None
        allowed = self.settings.common.bucket_name
        bucket = asset.get("bucket") or allowed
        if not bucket or (allowed and bucket != allowed):
            raise JobError("INPUT_INVALID_KEY", f"bucket {str(bucket)[:64]!r} is not BUCKET_NAME")
        self.bucket = bucket
        self._set_asset(
            {
                "status": "processing",
                "processing_stage": "transcoding",
                "transcode_progress": 0,
                "streaming_ready": False,
            }  # fmt: skip
        )
        try:
            size = self.s.storage.size_of(self.bucket, key)
        except ObjectMissing:
            raise JobError("INPUT_NOT_FOUND", f"the upload is not in storage: {key}") from None
        if size == 0:
            raise JobError("INPUT_UNSUPPORTED", "the upload is empty (0 bytes)")
        return key, size

    def _start_heartbeat(self, size: int) -> None:
        visibility = visibility_for_size(size)
        self.s.queue.set_visibility(self.message, visibility)
        self.heartbeat = VisibilityHeartbeat(
            self.s.queue,
            self.message,
            visible_until=time.monotonic() + visibility,
            interval=self.settings.heartbeat_interval_seconds,
            extension=self.settings.heartbeat_extension_seconds,
            log=self.log,
        ).__enter__()
        self.log.event("visibility_set", seconds=visibility, input_bytes=size)

    def _prepare_job_dir(self, size: int) -> None:
        work_dir = self.settings.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        need = int(size * self.settings.disk_space_factor) + self.settings.disk_reserve_bytes
        free = shutil.disk_usage(work_dir).free
        if free < need:
            raise JobError(
                "DISK_TOO_SMALL",
                f"{free // 2**20} MiB free in {work_dir}, {need // 2**20} MiB needed",
            )
        self.job_dir.mkdir(exist_ok=True)
        self._lock = open(self.job_dir / ".lock", "a")  # noqa: SIM115 - held for the job
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise JobAborted("another local process holds this job's folder", lost=True) from None
        for entry in self.job_dir.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self.layout.thumbnails.mkdir(parents=True)
        self.layout.tiles.mkdir()

    def _remove_job_dir(self) -> None:
        if self._lock is not None:
            shutil.rmtree(self.job_dir, ignore_errors=True)
            self._lock.close()
            self._lock = None

    def _start_download(self, key: str, size: int) -> None:
        """Start the download and wait only until FFmpeg can start reading:
        the rest comes down while it encodes (streaming/input_feed.py)."""
        self.feed.start(self.s.storage, self.bucket, key)

        def check() -> None:
            landed = self.feed.landed_bytes()
            self.lease.fraction = DOWNLOAD_SHARE * min(1.0, landed / max(size, 1))
            self.check()

        self.feed.wait_for_start(check)

    def _probe(self, feed: InputFeed) -> MediaInfo:
        try:
            return probe(self.settings.ffprobe_bin, feed.url)
        except JobError:  # judged again on the whole file: not on bytes still on their way
            feed.wait_for_all(self.check)
            return probe(self.settings.ffprobe_bin, feed.path)

    def _run_transcode(
        self, feed: InputFeed, info: MediaInfo, renditions: list[Rendition], decoder: str | None
    ) -> RunResult:
        opts = EncodeOptions(
            self.settings.x264_preset,
            self.settings.x264_crf,
            self.settings.audio_kbps,
            self.settings.segment_seconds,
            self.settings.storyboard_tile_width,
            can_tonemap={"zscale", "tonemap"} <= self.s.filters,
        )
        if info.hdr and not opts.can_tonemap:
            self.log.event("hdr_not_tonemapped", "warning", transfer=info.color_transfer)
        command = transcode_command(
            self.settings.ffmpeg_bin, feed.url, self.layout, info, renditions, opts, decoder
        )
        self.log.event("ffmpeg_started", decoder=decoder or "software", command=command)
        self.ffmpeg_runs += 1

        def on_progress(seconds: float) -> None:
            if self.uploader is not None:
                self.uploader.ship_finished_segments()
            self._read_codecs(renditions)
            share = min(1.0, seconds / info.duration)
            self.lease.fraction = max(self.lease.fraction, DOWNLOAD_SHARE + TRANSCODE_SHARE * share)

        result = run_ffmpeg(
            command,
            check=self.check,
            on_progress=on_progress,
            stall_seconds=self.settings.ffmpeg_stall_seconds,
        )
        # A failed download cuts FFmpeg's reads short; that, not what FFmpeg
        # made of it, is the job's error. A run that failed while bytes were
        # still on their way is judged once the download has ended.
        feed.raise_error()
        if not result.ok:
            feed.wait_for_all(self.check)
        return result

    def _transcode(self, feed: InputFeed, info: MediaInfo, renditions: list[Rendition]) -> str:
        allow_hw = self.settings.hw_decode == "auto"
        decoder = pick_decoder(info, self.s.decoders, allow_hw)
        result = self._run_transcode(feed, info, renditions, decoder)
        if not result.ok and decoder is not None:
            self.log.event(
                "hw_decode_failed", "warning", decoder=decoder, stderr=result.stderr_tail
            )
            self._reset_outputs()
            decoder = None
            result = self._run_transcode(feed, info, renditions, decoder)
        if not result.ok:
            self._raise_for(result)
        self.log.event("ffmpeg_finished", seconds=round(result.seconds, 2))
        return decoder or "software"

    def _raise_for(self, result: RunResult) -> None:
        tail = result.stderr_tail.replace(str(self.job_dir), "<job>")
        if "No space left on device" in tail:
            raise JobError("DISK_TOO_SMALL", "the work dir filled up during the transcode")
        if result.stalled:
            raise JobError(
                "FFMPEG_STALLED",
                f"FFmpeg made no progress for {self.settings.ffmpeg_stall_seconds}s",
            )
        last = tail.splitlines()[-3:] if tail else ["(no error output)"]
        raise JobError(
            "FFMPEG_FAILED", f"FFmpeg exited with {result.returncode}: {' | '.join(last)[:800]}"
        )

    def _reset_outputs(self) -> None:
        self.codecs.clear()
        if self.uploader is not None:
            self.uploader.reset()
        for folder in (self.layout.root, self.layout.tiles):
            shutil.rmtree(folder, ignore_errors=True)
        self.layout.thumbnails.mkdir(parents=True)
        self.layout.tiles.mkdir()

    def _storyboard(self, info: MediaInfo) -> Storyboard:
        tiles = sorted(self.layout.tiles.glob("tile_*.jpg"))
        if not tiles:
            raise JobError("FFMPEG_FAILED", "FFmpeg wrote no storyboard frames")
        interval = float(self.settings.segment_seconds)
        count = min(len(tiles), max(1, -int(-info.duration // interval)))
        first = probe_output(self.settings.ffprobe_bin, tiles[0]).get("streams") or [{}]
        board = Storyboard(
            count,
            interval,
            int(first[0].get("width") or self.settings.storyboard_tile_width),
            int(first[0].get("height") or 0),
        )
        for extra in tiles[count:]:
            extra.unlink()
        for command in sprite_commands(
            self.settings.ffmpeg_bin, self.layout, board.tiles, board.columns, board.rows
        ):
            result = run_ffmpeg(
                command, check=self.check, stall_seconds=self.settings.ffmpeg_stall_seconds
            )
            if not result.ok:
                self._raise_for(result)
        (self.layout.thumbnails / "storyboard.vtt").write_text(board.vtt(info.duration))
        if not self.layout.poster.is_file():
            shutil.copyfile(tiles[0], self.layout.poster)
        return board

    def _read_codecs(self, renditions: list[Rendition]) -> dict[str, list[dict[str, Any]]]:
        """The streams of each rendition's first segment (for CODECS), read
        once it is finished (FFmpeg renames it into place then), so during the
        encode rather than after it."""
        for r in renditions:
            first = self.layout.first_segment(r)
            if r.name not in self.codecs and first.is_file():
                found = probe_output(self.settings.ffprobe_bin, first).get("streams", [])
                self.codecs[r.name] = found
        return self.codecs

    def _write_master(self, renditions: list[Rendition], info: MediaInfo) -> list[VariantStats]:
        variants = []
        for r in renditions:
            playlist = self.layout.playlist(r)
            first = self.layout.first_segment(r)
            if not playlist.is_file() or not first.is_file():
                raise JobError("FFMPEG_FAILED", f"FFmpeg wrote no {r.name} rendition")
            streams = self._read_codecs([r]).get(r.name) or []
            variant = measure_variant(r, playlist, streams)
            # FFmpeg ends without an error at the first unreadable byte of a cut
            # file; a stream that stops long before the stated end is not a success.
            if variant.duration < 0.5 * info.duration:
                raise JobError(
                    "INPUT_CORRUPT",
                    f"the video data ends at {variant.duration:.1f}s of the "
                    f"{info.duration:.1f}s the file states: truncated or corrupt upload",
                )
            variants.append(variant)
        self.layout.master.write_text(master_playlist(variants))
        return variants

    def _upload(self) -> None:
        total = self.uploader.total_bytes() or 1

        def check() -> None:
            share = DOWNLOAD_SHARE + TRANSCODE_SHARE
            sent = min(1.0, self.uploader.bytes_sent / total)
            self.lease.fraction = max(self.lease.fraction, share + (1 - share) * sent)
            self.check()

        written = self.uploader.finish(check)
        self.output_bytes = total
        removed = self.uploader.remove_except(set(written))
        if removed:
            self.log.event("stale_outputs_removed", removed=removed)

    def _persist(self, write: Callable[[], Any]) -> Any:
        """A final write, retried through a short outage: the stream is already
        uploaded, and giving up here would throw a whole transcode away.
        (Both writes set fixed values, so repeating one is harmless.)"""
        for delay in FINAL_WRITE_RETRY_DELAYS:
            try:
                return write()
            except DatabaseUnavailable as exc:
                self.log.event("final_write_retry", "info", error=str(exc)[:200], retry_in=delay)
                if self.s.stop.wait(delay):
                    break
        return write()

    def _record_success(
        self,
        info: MediaInfo,
        variants: list[VariantStats],
        board: Storyboard,
        decoder: str,
        input_bytes: int,
    ) -> None:
        self.check()
        thumbs = streaming_prefix(self.request.org_id, self.request.media_id) + "thumbnails/"
        asset_fields = {
            "status": "ready",
            "processing_stage": "complete",
            "transcode_progress": 100,
            "streaming_ready": True,
            "duration_seconds": round(info.duration, 3),
            "thumbnail_path": thumbs + "poster.jpg",
            "thumbnail_sprite_path": thumbs + Storyboard.sprite_name(0),
            "thumbnail_vtt_path": thumbs + "storyboard.vtt",
            "thumbnail_frame_count": board.tiles,
            "thumbnail_interval_seconds": board.interval,
            "thumbnail_width": board.tile_width,
            "thumbnail_height": board.tile_height,
        }
        result = {
            "renditions": [v.summary() for v in variants],
            "duration_seconds": round(info.duration, 3),
            "source": {
                "width": info.width,
                "height": info.height,
                "codec": info.video_codec,
                "fps": round(info.fps, 3),
                "has_audio": info.has_audio,
            },  # fmt: skip
            "decoder": decoder,
            "worker": self.settings.common.worker_name,
            "timings": self.timings,
            "input_bytes": input_bytes,
            "output_bytes": self.output_bytes,
            "storyboard": {"frames": board.tiles, "sprites": board.sprites},
            "ffmpeg_runs": self.ffmpeg_runs,
        }
        job_fields = {
            "state": "succeeded",
            "progress": 1,
            "finished_at": utc_now(),
            "result": result,
            "error_code": None,
            "error_message": None,
        }
        self._persist(lambda: self._set_asset(asset_fields))
        owned = self._persist(
            lambda: self.s.db.update_owned_job(self.request.job_id, self.attempt, job_fields)
        )
        if not owned:
            raise JobAborted("another worker took the job over before it was recorded", lost=True)
