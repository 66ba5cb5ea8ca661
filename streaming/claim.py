"""Who holds a job: read it, judge the message against it (streaming/fate.py),
and take it with a compare-and-swap when the verdict says so.

The claim records in the row which message now holds the job
(streaming/job_record.py), so a later message can tell the holder's own
returning message from a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streaming.errors import JobError
from streaming.fate import (
    ClaimVerdict,
    Event,
    Happened,
    Policy,
    Verdict,
    crash_looping,
    read_claim,
    rerun_reason,
)
from streaming.job_record import Attempts, JobView, asset_repair, lease_record, read_job
from streaming.messages import TranscodeRequest
from streaming.services import Services
from streaming.settle import Target
from streaming.upload_source import upload_location
from utils.sqs_queue import Message
from utils.states import JobState
from utils.storage import ObjectMissing, StorageUnavailable
from utils.supabase_db import DatabaseRejected, DatabaseUnavailable

CLAIM_TRIES = 3  # a claim that loses a race reads the job again

_HAPPENED = {
    Verdict.REJECT: Happened.REJECTED,
    Verdict.SKIP: Happened.SKIPPED,
    Verdict.DUPLICATE: Happened.DUPLICATE,
    Verdict.WAIT: Happened.DEFERRED,
    Verdict.REFRESH: Happened.REFRESHED,
}


@dataclass(frozen=True)
class Claim:
    """`event` None: this worker now holds the job under `target.attempt`."""

    event: Event | None
    target: Target | None = None
    attempts: Attempts = field(default_factory=Attempts)
    repair: dict[str, Any] | None = None  # SKIPPED: the asset write a final job still lacks


def claim(services: Services, request: TranscodeRequest, message: Message, policy: Policy) -> Claim:
    try:
        return _claim(services, request, message, policy)
    except (DatabaseUnavailable, DatabaseRejected) as exc:
        return Claim(Event(Happened.UNAVAILABLE, "DATABASE_UNAVAILABLE", str(exc)))
    except StorageUnavailable as exc:  # (asked only of a re-sent failed job)
        return Claim(Event(Happened.UNAVAILABLE, "STORAGE_UNAVAILABLE", str(exc)))


def _read(services: Services, job_id: str) -> JobView | None:
    row = services.db.get_job(job_id)
    return read_job(row, services.db.server_now()) if row is not None else None


def _claim(
    services: Services, request: TranscodeRequest, message: Message, policy: Policy
) -> Claim:
    ids = (request.org_id, request.media_id)
    job = _read(services, request.job_id)
    rerun = _rerun(services, request, job)
    for _ in range(CLAIM_TRIES):
        verdict = read_claim(job, ids, message.message_id, message.receive_count, policy, rerun)
        if verdict.verdict not in (Verdict.CLAIM, Verdict.TAKE_OVER):
            return _settled_before_work(services, request, job, verdict)
        assert job is not None and job.state is not None
        record = lease_record(
            message.message_id, services.settings.common.worker_name, verdict.attempts
        )
        stale = policy.stale_seconds if job.state is JobState.RUNNING else None
        attempt = services.db.claim_job(job.id, (job.state.value, job.attempt), record, stale)
        if attempt is not None:
            return _held(request, attempt, verdict.attempts, policy)
        job = _read(services, request.job_id)  # another worker changed it first
    return Claim(Event(Happened.UNAVAILABLE, None, "the job kept changing under the claim"))


def _rerun(services: Services, request: TranscodeRequest, job: JobView | None) -> str | None:
    """For a failed job sent again: why it runs again, or None (fate.rerun_reason)."""
    if job is None or job.state is not JobState.FAILED:
        return None
    without_upload = rerun_reason(job, None)  # (giving up needs no look at the upload)
    if without_upload is not None:
        return without_upload
    try:
        asset = services.db.get_asset(request.media_id)
        bucket, key = upload_location(asset, request, services.settings.common.bucket_name)
        upload = services.storage.stat(bucket, key)
    except (JobError, ObjectMissing):
        return None  # still no usable upload: the failure stands
    return rerun_reason(job, upload)


def _held(request: TranscodeRequest, attempt: int, attempts: Attempts, policy: Policy) -> Claim:
    target = Target(request.job_id, request.media_id, attempt)
    if crash_looping(attempts, policy):
        reason = (
            f"{attempts.crashed} workers took the job and vanished without a result "
            "(killed, out of memory or power lost): it is not tried again"
        )
        return Claim(Event(Happened.FAILED, "WORKER_CRASHED", reason, attempts), target, attempts)
    return Claim(None, target, attempts)


def _settled_before_work(
    services: Services, request: TranscodeRequest, job: JobView | None, verdict: ClaimVerdict
) -> Claim:
    event = Event(
        _HAPPENED[verdict.verdict], verdict.code, verdict.reason,
        verdict.attempts, verdict.wait_seconds,
    )  # fmt: skip
    if job is None or verdict.verdict is Verdict.REJECT:
        return Claim(event)
    target = Target(request.job_id, request.media_id, job.attempt)
    repair = None
    if verdict.verdict is Verdict.SKIP:
        repair = asset_repair(job, services.db.get_asset(request.media_id))
    return Claim(event, target, verdict.attempts, repair)
