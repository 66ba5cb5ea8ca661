"""All Supabase (PostgREST) calls of both workers.

The rest of the code speaks of jobs, assets and cleanup rows. Errors come out
as `DatabaseUnavailable` (network, 5xx, connection trouble: retry later) or
`DatabaseRejected` (the request itself was refused: a bug or bad data).

Writes to a transcode job are compare-and-swap on (`state`, `attempt`): the
claim only succeeds from the state we read, and every later write only lands
while the job is still `running` under our attempt number. A write that
matches no row means another worker has taken the job over.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import create_client
from supabase.lib.client_options import SyncClientOptions

from utils.states import AssetStage, AssetStatus, JobState

Row = dict[str, Any]

# PostgreSQL error classes that say "the request was wrong", not "try again":
# data exceptions, integrity violations, syntax/undefined objects.
_REJECTED_SQLSTATE_CLASSES = ("22", "23", "42")


class DatabaseUnavailable(Exception):
    """Supabase could not be reached or failed in a way that may pass."""


class DatabaseRejected(Exception):
    """Supabase refused the request itself (bad input or a schema mismatch)."""


# A timestamp from PostgreSQL's own clock (`'now()'` is a valid timestamptz
# value): the live schema has no `updated_at` triggers, and a lease must be
# judged on one clock, not on each worker's.
DB_NOW = "now()"

ASSET_REQUEUED = {
    "status": AssetStatus.UPLOADED.value,
    "processing_stage": AssetStage.UPLOADED.value,
    "transcode_progress": 0,
    "streaming_ready": False,
}
ASSET_FAILED = {
    "status": AssetStatus.FAILED.value,
    "processing_stage": AssetStage.FAILED.value,
    "streaming_ready": False,
}


def _classify(exc: Exception, what: str) -> Exception:
    if isinstance(exc, APIError):
        code = str(exc.code or "")
        text = f"{what}: {code} {exc.message or ''}".strip()
        if code.startswith(_REJECTED_SQLSTATE_CLASSES) or code.startswith(("PGRST1", "PGRST2")):
            return DatabaseRejected(text)
        if code.isdigit() and 400 <= int(code) < 500 and int(code) not in (408, 429):
            return DatabaseRejected(text)
        return DatabaseUnavailable(text)
    return DatabaseUnavailable(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


class Database:
    def __init__(self, url: str, key: str, *, timeout: float = 15.0) -> None:
        self.clock_offset = 0.0  # server clock minus ours, from the `Date` header
        http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            event_hooks={"response": [self._note_server_clock]},
        )
        self.client = create_client(
            url,
            key,
            options=SyncClientOptions(
                httpx_client=http, auto_refresh_token=False, persist_session=False
            ),
        )

    def _note_server_clock(self, response: httpx.Response) -> None:
        try:
            server = parsedate_to_datetime(response.headers["date"])
        except (KeyError, TypeError, ValueError):
            return
        self.clock_offset = (server - datetime.now(timezone.utc)).total_seconds()

    def server_now(self) -> datetime:
        """The database side's time: lease ages are judged by it, so a worker
        whose own clock jumps neither steals a live job nor waits forever."""
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset)

    def _run(self, builder: Any, what: str) -> list[Row]:
        try:
            response = builder.execute()
        except (APIError, httpx.HTTPError, OSError) as exc:
            raise _classify(exc, what) from exc
        data = response.data
        if data is None:
            return []
        return data if isinstance(data, list) else [data]

    def _one(self, table: str, row_id: str) -> Row | None:
        rows = self._run(
            self.client.table(table).select("*").eq("id", row_id).limit(1), f"read {table}"
        )
        return rows[0] if rows else None

    # --- transcode jobs and media assets -------------------------------------

    def peek(self, table: str) -> None:
        """Read one row's id of `table` (raises if it cannot): `--check`."""
        self._run(self.client.table(table).select("id").limit(1), f"read {table}")

    def get_job(self, job_id: str) -> Row | None:
        return self._one("jobs", job_id)

    def get_asset(self, asset_id: str) -> Row | None:
        return self._one("media_assets", asset_id)

    def claim_job(
        self, job_id: str, seen: tuple[str, int], record: Row, stale_after: int | None
    ) -> int | None:
        """`queued` → `running` under the next attempt, recording `record` (the
        lease: which message holds the job, the attempts so far) in `result`.

        `seen` is the (state, attempt) the decision was made on: the write only
        lands if nobody changed the job since. A `running` job (`stale_after`
        set) is taken only while its lease is still that old. Returns our
        attempt number, or None when another worker changed the job first.
        """
        state, attempt = seen
        query = (
            self.client.table("jobs")
            .update(
                {
                    "state": JobState.RUNNING.value,
                    "attempt": attempt + 1,
                    "started_at": DB_NOW,
                    "updated_at": DB_NOW,
                    "progress": 0,
                    "error_code": None,
                    "error_message": None,
                    "finished_at": None,
                    "result": record,
                }
            )
            .eq("id", job_id)
            .eq("state", state)
            .eq("attempt", attempt)
        )
        if stale_after is not None:
            # Date headers have 1-s resolution: a lease is judged 1 s generously.
            cutoff = self.server_now() - timedelta(seconds=stale_after + 1)
            query = query.lt("updated_at", cutoff.isoformat())
        rows = self._run(query, "claim job")
        return attempt + 1 if rows else None

    def _update_running(self, job_id: str, attempt: int, fields: Row, what: str) -> bool:
        """Update a job still `running` under `attempt`; False when it is not."""
        rows = self._run(
            self.client.table("jobs")
            .update(fields)
            .eq("id", job_id)
            .eq("state", JobState.RUNNING.value)
            .eq("attempt", attempt),
            what,
        )
        return bool(rows)

    def _write_held(self, job_id: str, attempt: int, fields: Row, what: str) -> bool:
        """Write to a job we hold; False when it is no longer ours. Every such
        write renews the lease on the database's clock."""
        return self._update_running(job_id, attempt, {**fields, "updated_at": DB_NOW}, what)

    def renew_job(
        self, job_id: str, attempt: int, media_id: str, fraction: float, stage: AssetStage
    ) -> bool:
        """The lease's renewal and the progress bar in one: False once the job
        is not ours. The asset's status and stage are written every time, so
        a late `uploaded` from the upload-completion function heals, and a
        running job's asset never says it is ready."""
        if not self._write_held(job_id, attempt, {"progress": round(fraction, 4)}, "renew job"):
            return False
        self.update_asset(
            media_id,
            {
                "transcode_progress": int(fraction * 100),
                "status": AssetStatus.PROCESSING.value,
                "processing_stage": stage.value,
                "streaming_ready": False,
            },
        )
        return True

    def hold_job(self, job_id: str, attempt: int) -> bool:
        """True while the job is still ours (renewing the lease)."""
        return self._write_held(job_id, attempt, {}, "renew job")

    def hand_over_job(self, job_id: str, attempt: int, record: Row) -> bool:
        """Record another message as the running job's holder, leaving its
        lease time alone (a waiting worker must not make a dead lease fresh)."""
        return self._update_running(job_id, attempt, {"result": record}, "hand over job")

    def requeue_job(self, job_id: str, attempt: int, record: Row) -> bool:
        """Hand a job we hold back to the queue (its asset: `ASSET_REQUEUED`)."""
        fields = {
            "state": JobState.QUEUED.value,
            "progress": 0,
            "error_code": None,
            "error_message": None,
            "result": record,
        }
        return self._write_held(job_id, attempt, fields, "requeue job")

    def fail_job(self, job_id: str, attempt: int, error: tuple[str, str], record: Row) -> bool:
        """Fail a job we hold for good (its asset: `ASSET_FAILED`)."""
        code, message = error
        fields = {
            "state": JobState.FAILED.value,
            "error_code": code,
            "error_message": message[:1000],
            "finished_at": DB_NOW,
            "result": record,
        }
        return self._write_held(job_id, attempt, fields, "fail job")

    def succeed_job(self, job_id: str, attempt: int, result: Row) -> bool:
        """Record a job we hold as done (the commit point of a success)."""
        fields = {
            "state": JobState.SUCCEEDED.value,
            "progress": 1,
            "finished_at": DB_NOW,
            "result": result,
            "error_code": None,
            "error_message": None,
        }
        return self._write_held(job_id, attempt, fields, "succeed job")

    def upsert_device(self, fields: Row) -> None:
        """The admin dashboard's row for this machine, by its unique `name`."""
        self._run(
            self.client.table("compute_devices").upsert(fields, on_conflict="name"),
            "upsert compute device",
        )

    def update_asset(self, asset_id: str, fields: Row) -> None:
        self._run(
            self.client.table("media_assets").update(fields).eq("id", asset_id),
            "update media asset",
        )

    # --- cleanup rows ---------------------------------------------------------

    def pending_cleanup_rows(self, limit: int, after: tuple[str, str] | None = None) -> list[Row]:
        """Unprocessed cleanup rows, oldest first, `limit` at a time.

        `after` is the (created_at, id) of the last row of the previous page:
        keyset paging, so rows marked done meanwhile do not shift the pages.
        """
        query = (
            self.client.table("media_cleanup_jobs")
            .select("*")
            .is_("processed_at", "null")
            .order("created_at")
            .order("id")
            .limit(limit)
        )
        if after is not None:
            created, row_id = after
            query = query.or_(
                f'created_at.gt."{created}",and(created_at.eq."{created}",id.gt.{row_id})'
            )
        return self._run(query, "read cleanup rows")

    def finish_cleanup_row(self, row_id: str, error: str | None) -> bool:
        """Mark a row handled (error None) or handled with a permanent error."""
        rows = self._run(
            self.client.table("media_cleanup_jobs")
            .update({"processed_at": DB_NOW, "error": error})
            .eq("id", row_id)
            .is_("processed_at", "null"),
            "mark cleanup row",
        )
        return bool(rows)

    def note_cleanup_error(self, row_id: str, error: str) -> None:
        """Record why a row is still open; the next pass tries it again."""
        self._run(
            self.client.table("media_cleanup_jobs")
            .update({"error": error})
            .eq("id", row_id)
            .is_("processed_at", "null"),
            "note cleanup error",
        )
