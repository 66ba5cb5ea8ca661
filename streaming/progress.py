"""A job's progress, in one object: stages report how far they are, and the
throttled write of it is also the lease's renewal and the check that the
job is still ours."""

from __future__ import annotations

import time

from streaming.settle import Target
from utils.observability import EventLog
from utils.states import AssetStage
from utils.supabase_db import Database, DatabaseRejected, DatabaseUnavailable

# Share of the progress bar per stage: download, transcode; the upload has the rest.
DOWNLOAD_SHARE, TRANSCODE_SHARE = 0.10, 0.80


class Progress:
    def __init__(self, db: Database, target: Target, interval: float, log: EventLog) -> None:
        self.db, self.target, self.interval, self.log = db, target, interval, log
        self.fraction = 0.0
        self.stage = AssetStage.TRANSCODING
        self.lost = False
        self._written_at = float("-inf")

    def report(self, fraction: float, stage: AssetStage | None = None) -> None:
        """How far the job is (never backwards, below 100 % until it is recorded)."""
        self.fraction = max(self.fraction, min(fraction, 0.99))
        if stage is not None and stage is not self.stage:
            self.stage = stage
            self._written_at = float("-inf")  # a new stage is shown at once

    def flush(self, *, force: bool = False) -> bool:
        """Write progress if due; False once the job is no longer ours."""
        now = time.monotonic()
        if self.lost or (not force and now - self._written_at < self.interval):
            return not self.lost
        self._written_at = now
        t = self.target
        try:
            self.lost = not self.db.renew_job(
                t.job_id, t.attempt, t.media_id, self.fraction, self.stage
            )
        except (DatabaseUnavailable, DatabaseRejected) as exc:
            # Progress is best effort (the lease lasts JOB_STALE_SECONDS); the final writes are not.
            self.log.event("progress_write_failed", "info", error=str(exc)[:200])
        return not self.lost
