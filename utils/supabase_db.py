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

Row = dict[str, Any]

# PostgreSQL error classes that say "the request was wrong", not "try again":
# data exceptions, integrity violations, syntax/undefined objects.
_REJECTED_SQLSTATE_CLASSES = ("22", "23", "42")


class DatabaseUnavailable(Exception):
    """Supabase could not be reached or failed in a way that may pass."""


class DatabaseRejected(Exception):
    """Supabase refused the request itself (bad input or a schema mismatch)."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


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
            timeout=httpx.Timeout(timeout, connect=10.0),
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

    def get_job(self, job_id: str) -> Row | None:
        return self._one("jobs", job_id)

    def get_asset(self, asset_id: str) -> Row | None:
        return self._one("media_assets", asset_id)

    def claim_job(self, job: Row, *, stale_after_seconds: int) -> Row | None:
        """Take `job` for this worker: `queued` → `running`, attempt + 1.

        A `running` job is taken over only when it has not been touched for
        `stale_after_seconds` (its worker died). Returns the claimed row, or
        None when another worker changed the job first.
        """
        now = utc_now()
        query = (
            self.client.table("jobs")
            .update(
                {
                    "state": "running",
                    "attempt": int(job["attempt"] or 1) + 1,
                    "started_at": now,
                    "updated_at": now,
                    "progress": 0,
                    "error_code": None,
                    "error_message": None,
                    "finished_at": None,
                }
            )
            .eq("id", job["id"])
            .eq("state", job["state"])
            .eq("attempt", job["attempt"])
        )
        if job["state"] == "running":
            # Date headers have 1-s resolution: a lease is judged 1 s generously.
            cutoff = self.server_now() - timedelta(seconds=stale_after_seconds + 1)
            query = query.lt("updated_at", cutoff.isoformat())
        rows = self._run(query, "claim job")
        return rows[0] if rows else None

    def update_owned_job(self, job_id: str, attempt: int, fields: Row) -> bool:
        """Write to a job we hold; False when it is no longer ours."""
        rows = self._run(
            self.client.table("jobs")
            .update({**fields, "updated_at": utc_now()})
            .eq("id", job_id)
            .eq("state", "running")
            .eq("attempt", attempt),
            "update job",
        )
        return bool(rows)

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
            .update({"processed_at": utc_now(), "error": error})
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
