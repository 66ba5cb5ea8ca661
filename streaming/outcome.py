"""A job's result, and the one place that turns it into DB writes and an SQS action.

| outcome    | jobs / media_assets                          | SQS message                    |
|------------|----------------------------------------------|--------------------------------|
| SUCCEEDED  | written by the job itself before this        | delete                         |
| SKIPPED    | untouched (already done or canceled)         | delete                         |
| REJECTED   | untouched (the message is bad, not the job)  | delete                         |
| DEFERRED   | untouched (another live worker holds it)     | hide until the lease is stale  |
| RETRY      | job → queued, asset → uploaded               | hide for the back-off          |
| FAILED     | job → failed + error, asset → failed         | delete                         |
| LOST       | untouched (the new owner decides)            | nothing: it is not ours        |
| STOPPED    | job → queued, asset → uploaded               | visible again at once          |

On the message's last allowed receive, RETRY of a job we hold becomes FAILED
(not silently left to the DLQ), and DEFERRED drops the duplicate (the holder
has its own message).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from streaming.retry_policy import is_last_receive, retry_backoff
from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, ReceiptInvalid, WorkQueue
from utils.supabase_db import Database, DatabaseRejected, DatabaseUnavailable, utc_now


class Kind(enum.Enum):
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    RETRY = "retry"
    FAILED = "failed"
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    code: str | None = None
    message: str = ""
    job_id: str | None = None
    media_id: str | None = None
    attempt: int | None = None  # set once this worker holds the job
    defer_seconds: int = 0


@dataclass(frozen=True)
class SettlePolicy:
    max_receive_count: int
    retry_backoff_seconds: int


def _db_write(log: EventLog, what: str, write: Callable[[], None]) -> None:
    try:
        write()
    except (DatabaseUnavailable, DatabaseRejected) as exc:
        log.event("db_write_failed", "warning", write=what, error=str(exc)[:300])


def _restore_queued(db: Database, outcome: Outcome, log: EventLog) -> None:
    """Hand a job we hold back to the queue, and the asset back to 'uploaded'."""
    if outcome.attempt is None or outcome.job_id is None:
        return

    def write() -> None:
        if (
            db.update_owned_job(
                outcome.job_id,
                outcome.attempt,
                {"state": "queued", "progress": 0, "error_code": None, "error_message": None},
            )
            and outcome.media_id
        ):
            db.update_asset(
                outcome.media_id,
                {"processing_stage": "uploaded", "status": "uploaded", "transcode_progress": 0},
            )

    _db_write(log, "requeue", write)


def _record_failure(db: Database, outcome: Outcome, log: EventLog) -> None:
    if outcome.attempt is None or outcome.job_id is None:
        return

    def write() -> None:
        if (
            db.update_owned_job(
                outcome.job_id,
                outcome.attempt,
                {
                    "state": "failed",
                    "error_code": outcome.code,
                    "error_message": outcome.message[:1000],
                    "finished_at": utc_now(),
                },  # fmt: skip
            )
            and outcome.media_id
        ):
            db.update_asset(
                outcome.media_id,
                {"processing_stage": "failed", "status": "failed", "streaming_ready": False},
            )

    _db_write(log, "fail", write)


def _sqs(log: EventLog, what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except ReceiptInvalid:
        log.event("message_not_ours", "info", action=what)
    except QueueUnavailable as exc:
        log.event("sqs_action_failed", "warning", action=what, error=str(exc)[:300])


def settle(
    outcome: Outcome,
    message: Message,
    *,
    db: Database,
    queue: WorkQueue,
    policy: SettlePolicy,
    log: EventLog,
) -> Outcome:
    """Apply `outcome` to the database and the queue; returns what was applied."""
    last = is_last_receive(message.receive_count, policy.max_receive_count)
    if outcome.kind is Kind.RETRY and last and outcome.attempt is not None:
        outcome = replace(
            outcome,
            kind=Kind.FAILED,
            message=f"gave up after {message.receive_count} attempts: {outcome.message}",
        )
    kind = outcome.kind
    fields = {"outcome": kind.value, "error_code": outcome.code, "reason": outcome.message[:500]}
    if kind is Kind.FAILED:
        _record_failure(db, outcome, log)
        log.event("job_failed", "error", **fields)
        _sqs(log, "delete", lambda: queue.delete(message))
    elif kind is Kind.REJECTED:
        log.event("message_rejected", "error", **fields)
        _sqs(log, "delete", lambda: queue.delete(message))
    elif kind in (Kind.SUCCEEDED, Kind.SKIPPED):
        log.event("job_settled", "info", **fields)
        _sqs(log, "delete", lambda: queue.delete(message))
    elif kind is Kind.DEFERRED:
        if last:
            log.event("duplicate_dropped", "info", **fields)
            _sqs(log, "delete", lambda: queue.delete(message))
        else:
            log.event("job_deferred", "info", defer_seconds=outcome.defer_seconds, **fields)
            _sqs(log, "defer", lambda: queue.set_visibility(message, outcome.defer_seconds))
    elif kind is Kind.RETRY:
        _restore_queued(db, outcome, log)
        delay = retry_backoff(message.receive_count, policy.retry_backoff_seconds)
        severity = "error" if last else "info"  # unclaimed on its last receive: goes to the DLQ
        log.event("job_retry", severity, retry_in_seconds=delay, last_receive=last, **fields)
        _sqs(log, "release", lambda: queue.set_visibility(message, delay))
    elif kind is Kind.STOPPED:
        _restore_queued(db, outcome, log)
        log.event("job_released", "info", **fields)
        _sqs(log, "release", lambda: queue.set_visibility(message, 0))
    else:  # LOST: another consumer holds the message and the job now
        log.event("job_lost", "warning", **fields)
    return outcome
