"""A job's fate, decided in one place: pure functions, no I/O.

Two decisions, each a table with a unit test per row (tests/unit/test_fate.py):

`read_claim` — what a received message means for its job, before any work:

| the job                                        | verdict   |
|------------------------------------------------|-----------|
| no row / ids or type do not match              | REJECT    |
| failed, re-sent, and `rerun_reason` says why   | as queued, a fresh budget |
| succeeded, failed, canceled (or unknown state) | SKIP      |
| running, lease fresh, another message holds it | DUPLICATE |
| running, lease fresh, this message (or none recorded) holds it | WAIT until stale |
| anything else, on a message near its last allowed receive | REFRESH |
| queued                                         | CLAIM     |
| running, lease stale (its worker vanished)     | TAKE_OVER, one more crash counted |

`decide` — how a message settles once that, or the attempt, is over: see
`_TABLE` below (rows, SQS action, outputs to remove, severity). Two rules
hold throughout:

- A message is only deleted once the row write that ends it has landed;
  a write that did not land sends a fresh copy that arrives only after our
  lease is stale, so the next worker takes the job over instead of
  mistaking the copy for a duplicate.
- The receive budget is SQS's, not the job's: interruptions that are not the
  job's fault (a stop, a wait for a lease) swap the message for a fresh copy
  instead of spending a receive, and a message with at most one receive left
  (`needs_fresh_copy`: one is kept in reserve for a worker that dies between
  receiving and acting) is swapped before any work, so SQS never
  dead-letters a job that is still wanted. What the job may spend is
  counted in its row (`Attempts`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from streaming.errors import JobAborted, JobError
from streaming.job_record import Attempts, JobView, parse_time
from streaming.retry_policy import needs_fresh_copy, retry_backoff
from utils.sqs_queue import QueueUnavailable, ReceiptInvalid
from utils.states import JobState
from utils.storage import ObjectStat, StorageUnavailable
from utils.supabase_db import DatabaseRejected, DatabaseUnavailable

MAX_DELAY_SECONDS = 900  # SQS's DelaySeconds limit


@dataclass(frozen=True)
class Policy:
    max_receive_count: int  # the queue's redrive (3 in production)
    max_attempts: int  # failed (or crashed) attempts before a job is failed for good
    backoff_seconds: int
    stale_seconds: int

    @property
    def after_stale(self) -> int:
        """A delay after which a lease last renewed now is surely stale."""
        return min(MAX_DELAY_SECONDS, self.stale_seconds + 5)


class Verdict(enum.Enum):
    REJECT = "rejected"
    SKIP = "skipped"
    DUPLICATE = "duplicate"
    WAIT = "deferred"
    REFRESH = "refreshed"
    CLAIM = "claim"
    TAKE_OVER = "take_over"


@dataclass(frozen=True)
class ClaimVerdict:
    verdict: Verdict
    code: str | None = None
    reason: str = ""
    wait_seconds: int = 0
    attempts: Attempts = field(default_factory=Attempts)


def rerun_reason(job: JobView, upload: ObjectStat | None) -> str | None:
    """Why a failed job that is sent again deserves another run, or None.

    The web app re-sends the same job, left `failed`, when a user retries an
    upload. It runs again when the failure was not the input's (it gave up
    after transient errors), or when the upload it judged was replaced since
    (`upload`: the object now; a job failed before this record existed is
    judged on the object's time against the failure's). An unchanged upload
    that failed for its own sake (or a crash loop) is not run again.
    """
    if job.state is not JobState.FAILED:
        return None
    if job.result.get("gave_up") is True:
        return "re-sent after giving up on transient errors"
    if upload is None:
        return None
    seen = job.result.get("upload")
    if isinstance(seen, dict):
        changed = upload.identity() != seen
    else:
        modified = parse_time(upload.modified)
        changed = bool(modified and job.finished_at and modified > job.finished_at)
    return "re-sent with a replaced upload" if changed else None


def read_claim(
    job: JobView | None,
    ids: tuple[str, str],
    message_id: str,
    receive_count: int,
    policy: Policy,
    rerun: str | None = None,
) -> ClaimVerdict:
    """`ids` is the message's (org_id, media_id); `rerun`, why a failed job
    runs again (`rerun_reason`)."""
    if job is None:
        return ClaimVerdict(Verdict.REJECT, "JOB_NOT_FOUND", "no jobs row for job_id")
    if (job.org_id, job.media_id) != ids or job.type != "transcode":
        return ClaimVerdict(
            Verdict.REJECT, "JOB_MISMATCH",
            "org_id/media_id/type of the message do not match the jobs row",
        )  # fmt: skip
    if job.state is JobState.FAILED and rerun is not None:
        if needs_fresh_copy(receive_count, policy.max_receive_count):
            return ClaimVerdict(Verdict.REFRESH, None, "few receives left: a fresh copy first")
        return ClaimVerdict(Verdict.CLAIM, None, rerun)  # a fresh budget: a new try
    if job.state is None or job.state.final:
        state = job.state.value if job.state else "in an unknown state"
        return ClaimVerdict(Verdict.SKIP, None, f"job already {state}")
    fresh = job.state is JobState.RUNNING and job.lease_age < policy.stale_seconds
    if fresh and job.holder is not None and job.holder != message_id:
        return ClaimVerdict(Verdict.DUPLICATE, None, "another live worker holds the job")
    if fresh:
        wait = int(max(1, policy.stale_seconds - job.lease_age + 5))
        return ClaimVerdict(
            Verdict.WAIT, None, "the holder's message is back while its lease is fresh",
            wait_seconds=min(wait, MAX_DELAY_SECONDS), attempts=job.attempts,
        )  # fmt: skip
    if needs_fresh_copy(receive_count, policy.max_receive_count):
        return ClaimVerdict(Verdict.REFRESH, None, "few receives left: a fresh copy first")
    if job.state is JobState.QUEUED:
        return ClaimVerdict(Verdict.CLAIM, attempts=job.attempts)
    return ClaimVerdict(
        Verdict.TAKE_OVER, None, "the job's worker stopped renewing its lease",
        attempts=job.attempts.with_crash(),
    )  # fmt: skip


def crash_looping(attempts: Attempts, policy: Policy) -> bool:
    """Every worker that took the job vanished, as often as the budget allows."""
    return attempts.crashed >= policy.max_attempts


class Happened(enum.Enum):
    """What came of a message (the claim's verdicts, then the attempt's end)."""

    REJECTED = "rejected"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"
    DEFERRED = "deferred"
    REFRESHED = "refreshed"
    UNAVAILABLE = "unavailable"  # the job could not be read or claimed
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an error never worth retrying
    TRANSIENT = "transient"  # an error worth another try
    STOPPED = "stopped"  # the worker is shutting down
    LOST = "lost"  # another worker holds the job or the message now


class Write(enum.Enum):
    NONE = "none"
    REPAIR_ASSET = "repair_asset"  # bring the asset in line with the final job
    HAND_OVER = "hand_over"  # record the fresh copy as the holder's message
    REQUEUE = "requeue"
    FAIL = "fail"
    SUCCEED = "succeed"


class Sqs(enum.Enum):
    DELETE = "delete"
    RESEND = "resend"  # a fresh copy (receive count 0) after `delay`, then delete
    HIDE = "hide"  # this message invisible for `delay`
    LEAVE = "leave"  # not ours any more


@dataclass(frozen=True)
class Event:
    happened: Happened
    code: str | None = None
    reason: str = ""
    attempts: Attempts = field(default_factory=Attempts)
    wait_seconds: int = 0


@dataclass(frozen=True)
class Settlement:
    outcome: str  # the word in the log: succeeded, failed, retry …
    write: Write
    sqs: Sqs
    delay: int = 0
    remove_outputs: bool = False
    severity: str = "info"
    code: str | None = None
    reason: str = ""
    attempts: Attempts = field(default_factory=Attempts)
    gave_up: bool = False  # failed after transient errors only: not the input's fault
    # When `write` did not land: what to do with the message instead.
    fallback: tuple[Sqs, int] = (Sqs.LEAVE, 0)


def _retry(event: Event, policy: Policy) -> Settlement:
    attempts = event.attempts.with_failure()
    if attempts.failed >= policy.max_attempts:
        reason = f"gave up after {attempts.failed} failed attempts: {event.reason}"
        return _fail(Event(Happened.FAILED, event.code, reason, attempts), policy, gave_up=True)
    delay = min(retry_backoff(attempts.failed, policy.backoff_seconds), MAX_DELAY_SECONDS)
    return Settlement(
        "retry", Write.REQUEUE, Sqs.RESEND, delay, code=event.code, reason=event.reason,
        attempts=attempts, fallback=(Sqs.RESEND, max(delay, policy.after_stale)),
    )  # fmt: skip


def _fail(event: Event, policy: Policy, gave_up: bool = False) -> Settlement:
    return Settlement(
        "failed", Write.FAIL, Sqs.DELETE, remove_outputs=True, severity="error",
        code=event.code, reason=event.reason, attempts=event.attempts, gave_up=gave_up,
        fallback=(Sqs.RESEND, policy.after_stale),
    )  # fmt: skip


def _unavailable(event: Event, receive_count: int, policy: Policy) -> Settlement:
    delay = min(retry_backoff(receive_count, policy.backoff_seconds), MAX_DELAY_SECONDS)
    if needs_fresh_copy(receive_count, policy.max_receive_count):
        # The job was not read: it may be running under this very message.
        return Settlement(
            "retry", Write.NONE, Sqs.RESEND, max(delay, policy.after_stale),
            severity="warning", code=event.code, reason=event.reason,
        )  # fmt: skip
    return Settlement("retry", Write.NONE, Sqs.HIDE, delay, code=event.code, reason=event.reason)


def _deferred(event: Event, receive_count: int, policy: Policy) -> Settlement:
    if needs_fresh_copy(receive_count, policy.max_receive_count):
        return Settlement(
            "deferred", Write.HAND_OVER, Sqs.RESEND, event.wait_seconds,
            reason=event.reason, attempts=event.attempts,
            fallback=(Sqs.RESEND, event.wait_seconds),
        )  # fmt: skip
    return Settlement("deferred", Write.NONE, Sqs.HIDE, event.wait_seconds, reason=event.reason)


def decide(event: Event, receive_count: int, policy: Policy) -> Settlement:
    """The settlement of one message: rows to write, SQS action, outputs to
    remove, severity (ERROR only for what an operator must look at)."""
    kind = event.happened
    if kind is Happened.REJECTED:
        return Settlement(
            "rejected", Write.NONE, Sqs.DELETE, severity="error",
            code=event.code, reason=event.reason,
        )  # fmt: skip
    if kind is Happened.SKIPPED:
        return Settlement(
            "skipped", Write.REPAIR_ASSET, Sqs.DELETE, reason=event.reason,
            fallback=(Sqs.RESEND, retry_backoff(1, policy.backoff_seconds)),
        )  # fmt: skip
    if kind is Happened.DUPLICATE:
        return Settlement("duplicate", Write.NONE, Sqs.DELETE, reason=event.reason)
    if kind is Happened.DEFERRED:
        return _deferred(event, receive_count, policy)
    if kind is Happened.REFRESHED:
        return Settlement("refreshed", Write.NONE, Sqs.RESEND, 0, reason=event.reason)
    if kind is Happened.UNAVAILABLE:
        return _unavailable(event, receive_count, policy)
    if kind is Happened.SUCCEEDED:
        return Settlement(
            "succeeded", Write.SUCCEED, Sqs.DELETE, attempts=event.attempts,
            fallback=(Sqs.RESEND, policy.after_stale),
        )  # fmt: skip
    if kind is Happened.FAILED:
        return _fail(event, policy)
    if kind is Happened.TRANSIENT:
        return _retry(event, policy)
    if kind is Happened.STOPPED:
        return Settlement(
            "stopped", Write.REQUEUE, Sqs.RESEND, 0, reason=event.reason,
            attempts=event.attempts, fallback=(Sqs.RESEND, policy.after_stale),
        )  # fmt: skip
    return Settlement("lost", Write.NONE, Sqs.LEAVE, severity="warning", reason=event.reason)


def happened_from(exc: Exception, attempts: Attempts) -> Event:
    """What an exception that ended an attempt means for the job."""
    if isinstance(exc, JobError):
        kind = Happened.FAILED if exc.permanent else Happened.TRANSIENT
        return Event(kind, exc.code, exc.message, attempts)
    if isinstance(exc, JobAborted):
        return Event(Happened.LOST if exc.lost else Happened.STOPPED, None, exc.reason, attempts)
    if isinstance(exc, ReceiptInvalid):
        return Event(Happened.LOST, None, f"message no longer ours: {exc}", attempts)
    for kinds, code in _TRANSIENT_ERRORS:
        if isinstance(exc, kinds):
            return Event(Happened.TRANSIENT, code, str(exc), attempts)
    # A bug must not kill the daemon; the attempt budget ends it.
    return Event(Happened.TRANSIENT, "WORKER_ERROR", f"{type(exc).__name__}: {exc}", attempts)


_TRANSIENT_ERRORS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    (StorageUnavailable, "STORAGE_UNAVAILABLE"),
    ((DatabaseUnavailable, DatabaseRejected), "DATABASE_UNAVAILABLE"),
    (QueueUnavailable, "QUEUE_UNAVAILABLE"),
)
