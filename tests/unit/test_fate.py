"""The fate of a job, row by row: `read_claim` and `decide` (streaming/fate.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from streaming.errors import JobAborted, JobError
from streaming.fate import (
    Event,
    Happened,
    Policy,
    Sqs,
    Verdict,
    Write,
    crash_looping,
    decide,
    happened_from,
    read_claim,
    rerun_reason,
)
from streaming.job_record import Attempts, JobView
from streaming.retry_policy import needs_fresh_copy
from utils.sqs_queue import QueueUnavailable, ReceiptInvalid
from utils.states import JobState
from utils.storage import ObjectStat, StorageUnavailable
from utils.supabase_db import DatabaseUnavailable

# Production values: heartbeat 240 s / extension 300 s, stale after 270 s, redrive after 3.
POLICY = Policy(max_receive_count=3, max_attempts=3, backoff_seconds=60, stale_seconds=270)
ORG, MEDIA = "0" * 8 + "-0000-4000-8000-" + "0" * 12, "1" * 8 + "-1111-4111-8111-" + "1" * 12
IDS = (ORG, MEDIA)
MINE, OTHER = "message-held", "message-other"
NONE_YET = Attempts()


def job(
    state: JobState | None = JobState.RUNNING, *, age: float = 10.0, holder: str | None = MINE,
    attempts: Attempts = NONE_YET, org: str = ORG, kind: str = "transcode",
) -> JobView:  # fmt: skip
    return JobView(
        id="job", org_id=org, media_id=MEDIA, type=kind, state=state, attempt=2,
        holder=holder, attempts=attempts, lease_age=age, result={},
    )  # fmt: skip


CLAIM_ROWS = [
    # (name, job, message id, receive count) -> verdict
    ("no row", None, MINE, 1, Verdict.REJECT),
    ("another org's job", job(JobState.QUEUED, org=MEDIA), MINE, 1, Verdict.REJECT),
    ("not a transcode job", job(JobState.QUEUED, kind="cleanup"), MINE, 1, Verdict.REJECT),
    ("succeeded", job(JobState.SUCCEEDED), MINE, 1, Verdict.SKIP),
    ("failed", job(JobState.FAILED), MINE, 1, Verdict.SKIP),
    ("canceled", job(JobState.CANCELED), MINE, 1, Verdict.SKIP),
    ("unknown state", job(None), MINE, 1, Verdict.SKIP),
    ("live holder, another message", job(age=10), OTHER, 1, Verdict.DUPLICATE),
    ("live holder, another message, last receive", job(age=10), OTHER, 3, Verdict.DUPLICATE),
    ("holder's own message back, lease fresh", job(age=61), MINE, 2, Verdict.WAIT),
    ("holder's own message back on its last receive", job(age=61), MINE, 3, Verdict.WAIT),
    ("queued, one receive left", job(JobState.QUEUED), OTHER, 2, Verdict.REFRESH),
    ("fresh lease, no holder recorded", job(age=10, holder=None), OTHER, 1, Verdict.WAIT),
    ("queued", job(JobState.QUEUED), OTHER, 1, Verdict.CLAIM),
    ("queued, last receive", job(JobState.QUEUED), OTHER, 3, Verdict.REFRESH),
    ("stale lease, holder's message back", job(age=300), MINE, 1, Verdict.TAKE_OVER),
    ("stale lease, another message", job(age=300), OTHER, 1, Verdict.TAKE_OVER),
    ("stale lease, one receive left", job(age=300), MINE, 2, Verdict.REFRESH),
    ("stale lease, last receive", job(age=300), MINE, 3, Verdict.REFRESH),
    ("unreadable lease time", job(age=float("inf")), OTHER, 1, Verdict.TAKE_OVER),
]


@pytest.mark.parametrize(
    "view, message_id, receive_count, verdict",
    [row[1:] for row in CLAIM_ROWS],
    ids=[row[0] for row in CLAIM_ROWS],
)
def test_read_claim(view, message_id: str, receive_count: int, verdict: Verdict) -> None:
    assert read_claim(view, IDS, message_id, receive_count, POLICY).verdict is verdict


@pytest.mark.parametrize(
    "receive_count, most, fresh_copy",
    [(1, 3, False), (2, 3, True), (3, 3, True), (1, 2, False), (2, 2, True), (1, 1, True),
     (4, 5, True), (3, 5, False)],
)  # fmt: skip
def test_one_receive_is_kept_in_reserve(receive_count: int, most: int, fresh_copy: bool) -> None:
    assert needs_fresh_copy(receive_count, most) is fresh_copy


def test_waiting_lasts_until_the_lease_is_stale() -> None:
    found = read_claim(job(age=61), IDS, MINE, 2, POLICY)
    assert found.wait_seconds == 270 - 61 + 5


def test_a_take_over_counts_one_more_crash_and_a_claim_none() -> None:
    before = Attempts(failed=1, crashed=1)
    taken = read_claim(job(age=300, attempts=before), IDS, MINE, 1, POLICY)
    claimed = read_claim(job(JobState.QUEUED, attempts=before), IDS, MINE, 1, POLICY)
    assert taken.attempts == Attempts(failed=1, crashed=2)
    assert claimed.attempts == before


@pytest.mark.parametrize(
    "attempts, looping",
    [(Attempts(crashed=2), False), (Attempts(failed=2, crashed=2), False),
     (Attempts(crashed=3), True)],
)  # fmt: skip
def test_only_real_crashes_make_a_crash_loop(attempts: Attempts, looping: bool) -> None:
    assert crash_looping(attempts, POLICY) is looping


A = Attempts(failed=1, crashed=0)
DECIDE_ROWS = [
    # (name, event, receive count) -> (write, sqs, delay, remove outputs, severity)
    ("bad message", Event(Happened.REJECTED, "INVALID_MESSAGE"), 1,
     (Write.NONE, Sqs.DELETE, 0, False, "error")),
    ("already final", Event(Happened.SKIPPED), 1,
     (Write.REPAIR_ASSET, Sqs.DELETE, 0, False, "info")),
    ("duplicate", Event(Happened.DUPLICATE), 3, (Write.NONE, Sqs.DELETE, 0, False, "info")),
    ("wait", Event(Happened.DEFERRED, wait_seconds=214), 1,
     (Write.NONE, Sqs.HIDE, 214, False, "info")),
    ("wait, one receive left", Event(Happened.DEFERRED, wait_seconds=214), 2,
     (Write.HAND_OVER, Sqs.RESEND, 214, False, "info")),
    ("wait on the last receive", Event(Happened.DEFERRED, wait_seconds=214), 3,
     (Write.HAND_OVER, Sqs.RESEND, 214, False, "info")),
    ("last receive", Event(Happened.REFRESHED), 3, (Write.NONE, Sqs.RESEND, 0, False, "info")),
    ("database down at the claim", Event(Happened.UNAVAILABLE, "DATABASE_UNAVAILABLE"), 1,
     (Write.NONE, Sqs.HIDE, 60, False, "info")),
    ("database down at the claim, one receive left",
     Event(Happened.UNAVAILABLE, "DATABASE_UNAVAILABLE"), 2,
     (Write.NONE, Sqs.RESEND, 275, False, "warning")),
    ("succeeded", Event(Happened.SUCCEEDED, attempts=A), 1,
     (Write.SUCCEED, Sqs.DELETE, 0, False, "info")),
    ("failed for good", Event(Happened.FAILED, "INPUT_UNSUPPORTED", attempts=A), 1,
     (Write.FAIL, Sqs.DELETE, 0, True, "error")),
    ("transient, first", Event(Happened.TRANSIENT, "STORAGE_UNAVAILABLE"), 1,
     (Write.REQUEUE, Sqs.RESEND, 60, False, "info")),
    ("transient, second", Event(Happened.TRANSIENT, "STORAGE_UNAVAILABLE", attempts=A), 3,
     (Write.REQUEUE, Sqs.RESEND, 120, False, "info")),
    ("transient, the last allowed",
     Event(Happened.TRANSIENT, "STORAGE_UNAVAILABLE", attempts=Attempts(failed=2)), 1,
     (Write.FAIL, Sqs.DELETE, 0, True, "error")),
    ("stopped", Event(Happened.STOPPED, attempts=A), 3,
     (Write.REQUEUE, Sqs.RESEND, 0, False, "info")),
    ("lost", Event(Happened.LOST), 1, (Write.NONE, Sqs.LEAVE, 0, False, "warning")),
]  # fmt: skip


@pytest.mark.parametrize(
    "event, receive_count, expected",
    [row[1:] for row in DECIDE_ROWS],
    ids=[row[0] for row in DECIDE_ROWS],
)
def test_decide(event: Event, receive_count: int, expected: tuple) -> None:
    plan = decide(event, receive_count, POLICY)
    assert (plan.write, plan.sqs, plan.delay, plan.remove_outputs, plan.severity) == expected


def test_every_write_of_a_held_job_that_does_not_land_comes_back_only_once_stale() -> None:
    for happened in (Happened.SUCCEEDED, Happened.FAILED, Happened.TRANSIENT, Happened.STOPPED):
        action, delay = decide(Event(happened), 1, POLICY).fallback
        assert action is Sqs.RESEND and delay >= POLICY.stale_seconds, happened


def test_interruptions_never_spend_the_attempt_budget() -> None:
    stopped = decide(Event(Happened.STOPPED, attempts=A), 1, POLICY)
    retried = decide(Event(Happened.TRANSIENT, "STORAGE_UNAVAILABLE", attempts=A), 1, POLICY)
    assert stopped.attempts == A
    assert retried.attempts == Attempts(failed=2)


def test_giving_up_says_how_often_it_tried() -> None:
    plan = decide(Event(Happened.TRANSIENT, "X", "down", Attempts(failed=2)), 1, POLICY)
    assert plan.reason == "gave up after 3 failed attempts: down"


@pytest.mark.parametrize(
    "exc, happened, code",
    [
        (JobError("INPUT_UNSUPPORTED", "text"), Happened.FAILED, "INPUT_UNSUPPORTED"),
        (JobError("DISK_TOO_SMALL", "full"), Happened.TRANSIENT, "DISK_TOO_SMALL"),
        (JobAborted("stop", lost=False), Happened.STOPPED, None),
        (JobAborted("taken", lost=True), Happened.LOST, None),
        (ReceiptInvalid("gone"), Happened.LOST, None),
        (StorageUnavailable("503"), Happened.TRANSIENT, "STORAGE_UNAVAILABLE"),
        (DatabaseUnavailable("down"), Happened.TRANSIENT, "DATABASE_UNAVAILABLE"),
        (QueueUnavailable("down"), Happened.TRANSIENT, "QUEUE_UNAVAILABLE"),
        (KeyError("bug"), Happened.TRANSIENT, "WORKER_ERROR"),
    ],
)
def test_happened_from(exc: Exception, happened: Happened, code: str | None) -> None:
    event = happened_from(exc, A)
    assert (event.happened, event.code, event.attempts) == (happened, code, A)


SEEN = {"size": 120, "etag": "abc", "modified": "2026-11-30T10:00:00+00:00"}
FAILED_AT = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)


def failed(result: dict) -> JobView:
    return replace(job(JobState.FAILED), result=result, finished_at=FAILED_AT)


RERUN_ROWS = [
    # (name, the failed job's record, the upload now) -> runs again?
    ("gave up after transient errors", {"gave_up": True}, None, True),
    ("the input's fault, same upload", {"upload": SEEN}, ObjectStat(120, "abc", SEEN["modified"]),
     False),
    ("the input's fault, replaced upload", {"upload": SEEN},
     ObjectStat(9000, "def", "2026-11-30T11:00:00+00:00"), True),
    ("the input's fault, upload gone", {"upload": SEEN}, None, False),
    ("no record, upload older than the failure", {},
     ObjectStat(120, "abc", "2026-11-30T10:00:00+00:00"), False),
    ("no record, upload newer than the failure", {},
     ObjectStat(120, "abc", "2026-11-30T10:06:00+00:00"), True),
    ("no record, unreadable time", {}, ObjectStat(120, "abc", "yesterday"), False),
    ("a crash loop, same upload", {"error_code": "WORKER_CRASHED", "gave_up": False,
     "upload": SEEN}, ObjectStat(120, "abc", SEEN["modified"]), False),
]  # fmt: skip


@pytest.mark.parametrize(
    "record, upload, runs", [row[1:] for row in RERUN_ROWS], ids=[row[0] for row in RERUN_ROWS]
)
def test_a_re_sent_failed_job_runs_again_only_when_worth_it(
    record: dict, upload: ObjectStat | None, runs: bool
) -> None:
    view = failed(record)
    reason = rerun_reason(view, upload)
    assert (reason is not None) is runs
    verdict = read_claim(view, IDS, OTHER, 1, POLICY, reason)
    assert verdict.verdict is (Verdict.CLAIM if runs else Verdict.SKIP)
    if runs:
        assert verdict.attempts == NONE_YET  # a new try gets the whole budget
        assert read_claim(view, IDS, OTHER, 3, POLICY, reason).verdict is Verdict.REFRESH


def test_only_a_failed_job_is_ever_run_again() -> None:
    for state in (JobState.SUCCEEDED, JobState.CANCELED):
        view = replace(job(state), result={"gave_up": True})
        assert rerun_reason(view, None) is None


def test_giving_up_is_recorded_as_not_the_inputs_fault() -> None:
    tired = Attempts(failed=POLICY.max_attempts - 1)
    plan = decide(Event(Happened.TRANSIENT, "STORAGE_UNAVAILABLE", "x", tired), 1, POLICY)
    assert (plan.write, plan.gave_up) == (Write.FAIL, True)
    plan = decide(Event(Happened.FAILED, "INPUT_UNSUPPORTED", "x"), 1, POLICY)
    assert (plan.write, plan.gave_up) == (Write.FAIL, False)
