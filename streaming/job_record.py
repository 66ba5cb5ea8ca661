"""What a worker reads of a `jobs` row, and what it keeps in the row's `result`.

While a job is unfinished, `jobs.result` (free for the worker, CONTRACT.md)
holds the worker's record of it:

    {"lease": {"message_id": "<SQS id>", "worker": "<name>"},
     "attempts": {"failed": 1, "crashed": 0}}

A job failed for good keeps what the failure was judged on, so a re-sent
job can tell a replaced upload from the same one (streaming/fate.py):

    {"attempts": {...}, "error_code": "INPUT_UNSUPPORTED", "gave_up": false,
     "upload": {"size": 120, "etag": "…", "modified": "2026-…"}}

`lease.message_id` names the one message that guarantees the job while it
runs: any other message for a live-leased job is a true duplicate. The
attempt counts are what the retry budget is judged on, so a deploy restart or
a wait for a stale lease never brings a healthy job closer to giving up. The
row is untrusted: anything malformed reads as "no record".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from utils.media_paths import canonical_uuid
from utils.states import JobState
from utils.supabase_db import ASSET_FAILED


@dataclass(frozen=True)
class Attempts:
    failed: int = 0  # attempts that ended in an error worth retrying
    crashed: int = 0  # attempts whose worker vanished without an outcome

    def with_failure(self) -> Attempts:
        return replace(self, failed=self.failed + 1)

    def with_crash(self) -> Attempts:
        return replace(self, crashed=self.crashed + 1)

    def as_json(self) -> dict[str, int]:
        return {"failed": self.failed, "crashed": self.crashed}


@dataclass(frozen=True)
class JobView:
    id: str
    org_id: str | None
    media_id: str | None
    type: str
    state: JobState | None  # None: a state this worker does not know
    attempt: int
    holder: str | None  # the message id the running attempt holds, if recorded
    attempts: Attempts
    lease_age: float  # seconds since the last lease write, on the database's clock
    result: dict[str, Any]
    finished_at: datetime | None = None


def _count(value: object) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6
    return value if ok else 0  # type: ignore[return-value]


def _attempts(record: dict[str, Any]) -> Attempts:
    raw = record.get("attempts")
    if not isinstance(raw, dict):
        return Attempts()
    return Attempts(failed=_count(raw.get("failed")), crashed=_count(raw.get("crashed")))


def _holder(record: dict[str, Any]) -> str | None:
    lease = record.get("lease")
    value = lease.get("message_id") if isinstance(lease, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


def parse_time(value: object) -> datetime | None:
    """A timestamp from a row or a store (ISO 8601, with its zone), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _age(updated_at: object, now: datetime) -> float:
    """Seconds since `updated_at`; unreadable reads as long ago (so a broken
    row never holds a job for ever)."""
    touched = parse_time(updated_at)
    return float("inf") if touched is None else max(0.0, (now - touched).total_seconds())


def _state(value: object) -> JobState | None:
    try:
        return JobState(value)
    except ValueError:
        return None


def read_job(row: dict[str, Any], now: datetime) -> JobView:
    record = row.get("result") if isinstance(row.get("result"), dict) else {}
    attempt = row.get("attempt")
    return JobView(
        id=str(row.get("id")),
        org_id=canonical_uuid(row.get("org_id")),
        media_id=canonical_uuid(row.get("media_asset_id")),
        type=str(row.get("type")),
        state=_state(row.get("state")),
        attempt=attempt if isinstance(attempt, int) and attempt >= 1 else 1,
        holder=_holder(record),
        attempts=_attempts(record),
        lease_age=_age(row.get("updated_at"), now),
        result=record,
        finished_at=parse_time(row.get("finished_at")),
    )


def failure_record(
    code: str | None, gave_up: bool, upload: dict[str, Any] | None
) -> dict[str, Any]:
    """What a failed-for-good job keeps: its code, whether it only gave up
    after transient errors, and the upload it was judged on (if one was seen)."""
    record: dict[str, Any] = {"error_code": code, "gave_up": gave_up}
    if upload is not None:
        record["upload"] = upload
    return record


def lease_record(message_id: str, worker: str, attempts: Attempts) -> dict[str, Any]:
    return {
        "lease": {"message_id": message_id, "worker": worker},
        "attempts": attempts.as_json(),
    }


# The asset columns whose values say "where is this video" to the web app.
_ASSET_STATE_KEYS = ("status", "processing_stage", "streaming_ready")
# What a success writes to the asset (and records in the job's result, so a
# redelivery can finish a success whose asset write did not land).
ASSET_SUCCESS_KEYS = frozenset(
    {
        *_ASSET_STATE_KEYS, "transcode_progress", "duration_seconds", "thumbnail_path",
        "thumbnail_sprite_path", "thumbnail_vtt_path", "thumbnail_frame_count",
        "thumbnail_interval_seconds", "thumbnail_width", "thumbnail_height",
    }
)  # fmt: skip


def asset_repair(job: JobView, asset: dict[str, Any] | None) -> dict[str, Any] | None:
    """The asset write that brings `asset` in line with a finished `job`, or
    None when it already is (a final write whose second half did not land)."""
    if asset is None:
        return None
    if job.state is JobState.SUCCEEDED:
        recorded = job.result.get("asset")
        want = (
            {k: v for k, v in recorded.items() if k in ASSET_SUCCESS_KEYS}
            if isinstance(recorded, dict)
            else {}
        )
        if want.get("streaming_ready") is not True:
            return None  # not a record this worker wrote: leave the asset alone
    elif job.state is JobState.FAILED:
        want = dict(ASSET_FAILED)
    else:
        return None
    if all(asset.get(key) == want.get(key) for key in _ASSET_STATE_KEYS):
        return None
    return want
