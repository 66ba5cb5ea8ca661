"""Who holds a job: the atomic claim, the lease that keeps it, and the
decisions a claim can end in (skip, reject, defer, retry, fail).

Every write to a held job is a compare-and-swap on (`state`, `attempt`)
(`utils.supabase_db`), so a worker that lost its job can never overwrite the
new owner's result.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from streaming.messages import TranscodeRequest
from streaming.outcome import Kind, Outcome
from streaming.retry_policy import is_last_receive
from streaming.services import Services
from utils.media_paths import canonical_uuid
from utils.observability import EventLog
from utils.sqs_queue import Message
from utils.supabase_db import DatabaseRejected, DatabaseUnavailable

FINAL_STATES = ("succeeded", "canceled", "failed")


class Lease:
    """This worker's hold on a job. Its throttled progress writes double as
    the lease's renewal (`updated_at`) and as the check that we still own it."""

    def __init__(self, services: Services, job_id: str, attempt: int, media_id: str) -> None:
        self.db = services.db
        self.job_id, self.attempt, self.media_id = job_id, attempt, media_id
        self.interval = services.settings.progress_write_seconds
        self.fraction = 0.0
        self.lost = False
        self._written_at = float("-inf")

    def advance(self, fraction: float, log: EventLog, *, force: bool = False) -> None:
        self.fraction = max(self.fraction, min(fraction, 0.99))
        now = time.monotonic()
        if not force and now - self._written_at < self.interval:
            return
        self._written_at = now
        try:
            owned = self.db.update_owned_job(
                self.job_id, self.attempt, {"progress": round(self.fraction, 4)}
            )
            if owned:
                self.db.update_asset(
                    self.media_id, {"transcode_progress": int(self.fraction * 100)}
                )
            else:
                self.lost = True
        except (DatabaseUnavailable, DatabaseRejected) as exc:
            # Progress is best effort; the final writes are not.
            log.event("progress_write_failed", "info", error=str(exc)[:200])


def _ids_match(job: dict[str, Any], request: TranscodeRequest) -> bool:
    return (
        canonical_uuid(job.get("org_id")) == request.org_id
        and canonical_uuid(job.get("media_asset_id")) == request.media_id
    )


def _stale_in(job: dict[str, Any], stale_seconds: int, now: datetime) -> int:
    """Seconds until a running job's lease goes stale (at least 5)."""
    try:
        touched = datetime.fromisoformat(str(job.get("updated_at")).replace("Z", "+00:00"))
        age = (now - touched).total_seconds()
    except ValueError:
        age = 0.0
    return int(max(5, stale_seconds - age + 5))


def _crash_looping(job: dict[str, Any], message: Message, max_receives: int) -> bool:
    """A stale `running` job, on its message's last receive, that was already
    started on (at least) every earlier receive: trying once more would most
    likely end like the others, and then SQS dead-letters the message and the
    job stays `running` forever."""
    earlier_starts = int(job.get("attempt") or 1) - 1
    return (
        job["state"] == "running"
        and is_last_receive(message.receive_count, max_receives)
        and earlier_starts >= max_receives - 1
    )


def claim(services: Services, request: TranscodeRequest, message: Message) -> Outcome | int:
    """The attempt number this worker now holds the job under, or the outcome
    that ends the message here (skip, reject, defer, retry, fail).

    A job found `running` and stale on the message's last allowed receive has
    killed every worker that tried it (or their machines kept dying under
    it): it is failed for good instead of being tried once more and left
    `running` forever when SQS dead-letters the message.
    """
    base = {"job_id": request.job_id, "media_id": request.media_id}
    stale = services.settings.job_stale_seconds
    try:
        job = services.db.get_job(request.job_id)
        if job is None:
            return Outcome(Kind.REJECTED, "JOB_NOT_FOUND", "no jobs row for job_id", **base)
        if not _ids_match(job, request) or job.get("type") != "transcode":
            return Outcome(
                Kind.REJECTED, "JOB_MISMATCH",
                "org_id/media_id/type of the message do not match the jobs row", **base,
            )  # fmt: skip
        for _ in range(2):
            if job["state"] in FINAL_STATES:
                return Outcome(Kind.SKIPPED, None, f"job already {job['state']}", **base)
            claimed = services.db.claim_job(job, stale_after_seconds=stale)
            if claimed is not None:
                attempt = int(claimed["attempt"])
                if _crash_looping(job, message, services.settings.max_receive_count):
                    return Outcome(
                        Kind.FAILED, "WORKER_CRASHED",
                        f"the job was started {attempt - 2} times and never finished: "
                        "every worker that tried it stopped without a result",
                        attempt=attempt, **base,
                    )  # fmt: skip
                return attempt
            job = services.db.get_job(request.job_id) or job
        return Outcome(
            Kind.DEFERRED, None, "another worker holds the job",
            defer_seconds=_stale_in(job, stale, services.db.server_now()), **base,
        )  # fmt: skip
    except (DatabaseUnavailable, DatabaseRejected) as exc:
        return Outcome(Kind.RETRY, "DATABASE_UNAVAILABLE", str(exc), **base)
