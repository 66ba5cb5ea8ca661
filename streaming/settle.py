"""Applies a settlement (streaming/fate.py): the one place that writes a
job's end to the database and acts on its SQS message.

Order: remove this attempt's outputs (only while it still holds the job),
write the pair of rows (job first, conditional on our attempt; then the
asset), then the SQS action — the planned one if the write landed, the
settlement's fallback if it did not. A write that finds the job no longer
ours ends as LOST: the new owner decides, and our message is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streaming.fate import Policy, Settlement, Sqs, Write
from streaming.job_record import failure_record, lease_record
from streaming.services import Services
from utils.config import TranscoderSettings
from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, ReceiptInvalid
from utils.storage import StorageUnavailable, StoredObject
from utils.supabase_db import (
    ASSET_FAILED,
    ASSET_REQUEUED,
    DatabaseRejected,
    DatabaseUnavailable,
)

FINAL_WRITE_RETRY_DELAYS = (2, 5, 15)

EVENT_NAMES = {
    "rejected": "message_rejected",
    "skipped": "job_settled",
    "succeeded": "job_settled",
    "duplicate": "duplicate_dropped",
    "deferred": "job_deferred",
    "refreshed": "message_refreshed",
    "retry": "job_retry",
    "failed": "job_failed",
    "stopped": "job_released",
    "lost": "job_lost",
}


@dataclass(frozen=True)
class Target:
    """The job a settlement writes to, and the attempt its writes are conditional on."""

    job_id: str
    media_id: str
    attempt: int


@dataclass(frozen=True)
class Report:
    """What an attempt leaves for its settlement."""

    bucket: str = ""
    written: tuple[str, ...] = ()  # the storage keys this attempt uploaded
    result: dict[str, Any] | None = None  # success: the job's summary
    asset: dict[str, Any] | None = None  # success, or a repair: the asset's fields
    upload: dict[str, Any] | None = None  # the upload's identity, as the attempt saw it
    extra: dict[str, Any] = field(default_factory=dict)  # for the log line


def policy_of(settings: TranscoderSettings) -> Policy:
    return Policy(
        max_receive_count=settings.max_receive_count,
        max_attempts=settings.max_job_attempts,
        backoff_seconds=settings.retry_backoff_seconds,
        stale_seconds=settings.job_stale_seconds,
    )


def settle(
    plan: Settlement,
    message: Message,
    target: Target | None,
    report: Report,
    services: Services,
    log: EventLog,
    before_sqs: Callable[[], None] = lambda: None,
) -> str:
    """Apply `plan`; returns the outcome as applied (`lost` when a write found
    the job taken over)."""
    services.health.outcome(plan.outcome, plan.code)
    if plan.remove_outputs and target is not None and report.written:
        _remove_outputs(target, report, services, log)
    if plan.write is Write.HAND_OVER and target is not None:
        before_sqs()
        _hand_over(plan, message, target, services, log)
        _log(plan, plan.sqs, plan.delay, log, report)
        return plan.outcome
    landed = _write(plan, target, report, services, log)
    if landed is False:
        log.event("job_lost", "warning", outcome="lost", reason="the job was taken over")
        return "lost"
    action, delay = (plan.sqs, plan.delay) if landed else plan.fallback
    before_sqs()
    _act(action, delay, message, services, log)
    _log(plan, action, delay, log, report, landed=bool(landed))
    return plan.outcome


def _log(
    plan: Settlement, action: Sqs, delay: int, log: EventLog, report: Report, landed: bool = True
) -> None:
    severity = plan.severity if landed else "warning"
    fields: dict[str, Any] = {
        "outcome": plan.outcome, "error_code": plan.code, "reason": plan.reason[:500],
        "sqs": action.value, "failed_attempts": plan.attempts.failed,
        "crashed_attempts": plan.attempts.crashed, **report.extra,
    }  # fmt: skip
    if plan.outcome == "deferred":
        fields["defer_seconds"] = delay
    if plan.outcome == "retry":
        fields["retry_in_seconds"] = delay
    if not landed:
        fields["write_landed"] = False
    log.event(EVENT_NAMES[plan.outcome], severity, **fields)


def _remove_outputs(target: Target, report: Report, services: Services, log: EventLog) -> None:
    """Delete what this attempt uploaded, and only while the job is still ours
    (a worker that lost the lease must not touch the new owner's stream)."""
    try:
        if not services.db.hold_job(target.job_id, target.attempt):
            log.event("partial_outputs_kept", "info", reason="the job is no longer ours")
            return
        keys = sorted(set(report.written))
        refused = 0
        for start in range(0, len(keys), 1000):
            batch = [StoredObject(k) for k in keys[start : start + 1000]]
            refused += len(services.storage.delete_objects(report.bucket, batch))
        log.event("partial_outputs_removed", removed=len(keys) - refused)
    except (DatabaseUnavailable, DatabaseRejected, StorageUnavailable) as exc:
        log.event("partial_outputs_not_removed", "warning", error=str(exc)[:300])


def _write(
    plan: Settlement, target: Target | None, report: Report, services: Services, log: EventLog
) -> bool | None:
    """The pair of rows: True landed; False the job is not ours; None it did
    not land (the job's half, or the asset's after it: a redelivery repairs that)."""
    if plan.write is Write.NONE or target is None:
        return True
    job_write, asset_fields = _pair(plan, target, report, services)
    owned = _persist(plan, job_write, services, log)
    if owned is not True:
        return owned
    if not asset_fields:
        return True
    return _persist(plan, lambda: _update_asset(services, target, asset_fields), services, log)


def _update_asset(services: Services, target: Target, fields: dict[str, Any]) -> bool:
    services.db.update_asset(target.media_id, fields)
    return True


def _pair(
    plan: Settlement, target: Target, report: Report, services: Services
) -> tuple[Callable[[], bool], dict[str, Any] | None]:
    """The job's write and the asset fields that go with it."""
    db, job = services.db, (target.job_id, target.attempt)
    record = {"attempts": plan.attempts.as_json()}
    if plan.write is Write.REQUEUE:
        return (lambda: db.requeue_job(*job, record)), ASSET_REQUEUED
    if plan.write is Write.FAIL:
        error = (plan.code or "WORKER_ERROR", plan.reason)
        failure = failure_record(plan.code, plan.gave_up, report.upload)
        return (lambda: db.fail_job(*job, error, {**record, **failure})), ASSET_FAILED
    if plan.write is Write.SUCCEED:
        result = {**(report.result or {}), **record, "asset": report.asset or {}}
        return (lambda: db.succeed_job(*job, result)), report.asset
    return (lambda: True), report.asset  # REPAIR_ASSET: the job is already final


def _persist(
    plan: Settlement, write: Callable[[], bool], services: Services, log: EventLog
) -> bool | None:
    """One write, retried through a short outage (the stream may already be
    up: giving up would throw a whole transcode away); a stop cuts the waits."""
    for delay in (*FINAL_WRITE_RETRY_DELAYS, None):
        try:
            return write()
        except DatabaseRejected as exc:
            log.event("settle_write_refused", "error", write=plan.write.value, error=str(exc)[:300])
            return None
        except DatabaseUnavailable as exc:
            log.event("final_write_retry", "info", write=plan.write.value, error=str(exc)[:200])
            if delay is None or services.notifier.wait(services.stop, delay):
                break
    return None


def _hand_over(
    plan: Settlement, message: Message, target: Target, services: Services, log: EventLog
) -> None:
    """The holder's message on its last receive: a fresh copy takes its place
    as the holder's, so the wait costs no receive and SQS never dead-letters it."""
    try:
        copy_id = services.queue.send_copy(message, plan.delay)
    except QueueUnavailable as exc:
        log.event("sqs_action_failed", "warning", action="send_copy", error=str(exc)[:300])
        _act(Sqs.HIDE, plan.delay, message, services, log)
        return
    record = lease_record(copy_id, services.settings.common.worker_name, plan.attempts)
    try:
        if not services.db.hand_over_job(target.job_id, target.attempt, record):
            log.event("hand_over_skipped", "info", reason="the job changed meanwhile")
    except (DatabaseUnavailable, DatabaseRejected) as exc:
        # The copy only arrives once the lease is stale: it takes the job over.
        log.event("hand_over_failed", "warning", error=str(exc)[:300])
    _sqs_call(log, "delete", lambda: services.queue.delete(message))


def _act(action: Sqs, delay: int, message: Message, services: Services, log: EventLog) -> None:
    queue = services.queue
    if action is Sqs.DELETE:
        _sqs_call(log, "delete", lambda: queue.delete(message))
    elif action is Sqs.HIDE:
        _sqs_call(log, "hide", lambda: queue.set_visibility(message, delay))
    elif action is Sqs.RESEND:
        if _sqs_call(log, "send_copy", lambda: queue.send_copy(message, delay)):
            _sqs_call(log, "delete", lambda: queue.delete(message))
        else:  # the old message then, at the cost of one of its receives
            _sqs_call(log, "hide", lambda: queue.set_visibility(message, delay))


def _sqs_call(log: EventLog, what: str, action: Callable[[], object]) -> bool:
    try:
        action()
        return True
    except ReceiptInvalid:
        log.event("message_not_ours", "info", action=what)
    except QueueUnavailable as exc:
        log.event("sqs_action_failed", "warning", action=what, error=str(exc)[:300])
    return False
