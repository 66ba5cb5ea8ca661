"""One cleanup pass: every pending `media_cleanup_jobs` row, oldest first.

Per row: compute the video's folder (`utils.media_paths.cleanup_prefix`,
which refuses anything but exactly `orgs/{org}/uploads/{media}/` for the
row's own media id), delete everything under it in DeleteObjects batches of
at most 1000 keys (every version and delete marker when the bucket keeps
versions), and mark the row. A row's failure never stops the pass; a stop
request is honoured between batches, never between deleting and marking.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from utils.config import CleanupSettings
from utils.media_paths import UnsafeKey, cleanup_prefix
from utils.observability import EventLog
from utils.storage import Storage, StorageDenied, StorageUnavailable, StoredObject
from utils.supabase_db import Database, DatabaseRejected, DatabaseUnavailable
from utils.systemd_notify import Notifier


class RowResult(enum.Enum):
    DONE = "done"  # folder gone, row marked processed
    REFUSED = "refused"  # unsafe or unusable row: marked processed with an error
    RETRY = "retry"  # some objects remain (or storage failed): row stays open
    STOPPED = "stopped"  # shutdown between batches: row stays open
    PLANNED = "planned"  # --dry-run: nothing changed


@dataclass
class PassSummary:
    rows_seen: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    objects_deleted: int = 0
    objects_found: int = 0
    pass_error: str | None = None
    stopped: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.rows_failed == 0 and self.pass_error is None

    def fields(self) -> dict[str, Any]:
        return {
            "rows_seen": self.rows_seen,
            "rows_done": self.rows_done,
            "rows_failed": self.rows_failed,
            "objects_deleted": self.objects_deleted,
            "seconds": round(time.monotonic() - self.started, 3),
            "stopped": self.stopped,
            "error": self.pass_error,
        }


class Cleaner:
    def __init__(
        self,
        settings: CleanupSettings,
        db: Database,
        storage: Storage,
        log: EventLog,
        stop: threading.Event,
        *,
        dry_run: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.log = log
        self.stop = stop
        self.dry_run = dry_run
        self.notifier = notifier or Notifier({})
        self._versioned: dict[str, bool] = {}

    def run_pass(self) -> PassSummary:
        summary = PassSummary()
        self._versioned.clear()  # asked once per pass: an operator may turn it on meanwhile
        self.log.event("pass_started", dry_run=self.dry_run)
        try:
            self._all_rows(summary)
        except (DatabaseUnavailable, DatabaseRejected, StorageUnavailable) as exc:
            summary.pass_error = str(exc)[:500]
            severity = "error" if isinstance(exc, StorageDenied) else "warning"
            self.log.event("pass_failed", severity, error=summary.pass_error)
        severity = "info" if summary.ok else "warning"
        self.log.event("pass_finished", severity, dry_run=self.dry_run, **summary.fields())
        return summary

    def _all_rows(self, summary: PassSummary) -> None:
        after: tuple[str, str] | None = None
        while not self.stop.is_set():
            rows = self.db.pending_cleanup_rows(self.settings.page_size, after)
            if not rows:
                return
            for row in rows:
                if self.stop.is_set():
                    summary.stopped = True
                    return
                summary.rows_seen += 1
                self.notifier.watchdog()
                self.notifier.status(
                    f"pass: row {summary.rows_seen}, {summary.objects_deleted} objects deleted"
                )
                result = self._row(row, summary)
                if result is RowResult.DONE:
                    summary.rows_done += 1
                elif result in (RowResult.REFUSED, RowResult.RETRY):
                    summary.rows_failed += 1
                elif result is RowResult.STOPPED:
                    summary.stopped = True
                    return
            last = rows[-1]
            after = (str(last["created_at"]), str(last["id"]))
        summary.stopped = True

    def _row(self, row: dict[str, Any], summary: PassSummary) -> RowResult:
        log = self.log.bind(cleanup_job_id=row.get("id"), media_asset_id=row.get("media_asset_id"))
        try:
            prefix = cleanup_prefix(row.get("storage_path"), row.get("media_asset_id"))
        except UnsafeKey as exc:
            return self._refuse(row, f"refused: {exc}", log)
        try:
            bucket = self._bucket(row)
        except UnsafeKey as exc:  # our configuration's doing: the row waits for a fix
            message = f"not deleted: {exc}"
            self._note(row, message, log)
            log.event("row_retry", "error", prefix=prefix, error=message)
            return RowResult.RETRY
        if self.dry_run:
            return self._plan(bucket, prefix, summary, log)
        try:
            deleted, remaining, stopped = self._delete_folder(bucket, prefix)
        except StorageUnavailable as exc:
            self._note(row, f"storage unavailable: {str(exc)[:300]}", log)
            # Denied rights do not pass on their own: an operator must see them.
            severity = "error" if isinstance(exc, StorageDenied) else "warning"
            log.event("row_retry", severity, prefix=prefix, error=str(exc)[:300])
            return RowResult.RETRY
        summary.objects_deleted += deleted
        if stopped:
            log.event("row_interrupted", prefix=prefix, objects_deleted=deleted)
            return RowResult.STOPPED
        if remaining:
            message = f"{remaining} objects under {prefix} could not be deleted; will retry"
            self._note(row, message, log)
            log.event("row_retry", "warning", prefix=prefix, objects_deleted=deleted,
                      objects_remaining=remaining)  # fmt: skip
            return RowResult.RETRY
        marked = self.db.finish_cleanup_row(str(row["id"]), None)
        log.event("row_done", prefix=prefix, bucket=bucket, objects_deleted=deleted,
                  already_marked=not marked)  # fmt: skip
        return RowResult.DONE

    def _bucket(self, row: dict[str, Any]) -> str:
        allowed = self.settings.common.bucket_name
        bucket = row.get("bucket") or allowed
        if not bucket:
            raise UnsafeKey("row has no bucket and BUCKET_NAME is not set")
        if allowed and bucket != allowed:
            raise UnsafeKey(f"bucket {str(bucket)[:64]!r} is not BUCKET_NAME")
        return str(bucket)

    def _refuse(self, row: dict[str, Any], message: str, log: EventLog) -> RowResult:
        log.event("row_refused", "error", storage_path=str(row.get("storage_path"))[:300],
                  reason=message)  # fmt: skip
        if not self.dry_run:
            self.db.finish_cleanup_row(str(row["id"]), message[:1000])
        return RowResult.REFUSED

    def _note(self, row: dict[str, Any], message: str, log: EventLog) -> None:
        try:
            self.db.note_cleanup_error(str(row["id"]), message[:1000])
        except (DatabaseUnavailable, DatabaseRejected) as exc:
            log.event("row_note_failed", "warning", error=str(exc)[:300])

    def _versions(self, bucket: str) -> bool:
        if bucket not in self._versioned:
            self._versioned[bucket] = self.storage.is_versioned(bucket)
        return self._versioned[bucket]

    def _pages(self, bucket: str, prefix: str) -> Any:
        for page in self.storage.list_objects(bucket, prefix, versions=self._versions(bucket)):
            # Belt and braces: never act on a key the prefix did not select.
            yield [o for o in page if o.key.startswith(prefix)]

    def _plan(self, bucket: str, prefix: str, summary: PassSummary, log: EventLog) -> RowResult:
        count = sum(len(page) for page in self._pages(bucket, prefix))
        summary.objects_found += count
        log.event("dry_run_row", prefix=prefix, bucket=bucket, objects_to_delete=count)
        return RowResult.PLANNED

    def _delete_folder(self, bucket: str, prefix: str) -> tuple[int, int, bool]:
        """(objects deleted, objects that would not go, stopped early)."""
        deleted = remaining = 0
        for page in self._pages(bucket, prefix):
            if self.stop.is_set():
                return deleted, remaining, True
            self.notifier.watchdog()
            failed: list[StoredObject] = self.storage.delete_objects(bucket, page)
            if failed:  # the store said no to some: one more try for just those
                failed = self.storage.delete_objects(bucket, failed)
            deleted += len(page) - len(failed)
            remaining += len(failed)
        return deleted, remaining, False
