"""`--check`: what an operator runs before `systemctl start`.

Each check reaches one thing the daemon needs (configuration, Supabase,
SQS, Wasabi, FFmpeg, the work dir) without touching a job or a message. All
run at once, each within its own deadline, so the whole takes well under a
minute however many are down. The result is a short table on stdout and an
exit code that says whether anything is broken.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from utils.storage import Storage, StorageUnavailable
from utils.supabase_db import Database, DatabaseRejected, DatabaseUnavailable

DEADLINE_SECONDS = 20.0


class CheckFailed(Exception):
    """What is wrong, in words for the operator."""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], str]  # returns a detail line; raises CheckFailed (or anything) if broken


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str


def _attempt(check: Check, box: dict[str, Outcome]) -> None:
    started = time.monotonic()
    try:
        detail = check.run()
        ok = True
    except CheckFailed as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a check's own surprise is a broken check, not a crash
        detail, ok = f"{type(exc).__name__}: {exc}", False
    took = time.monotonic() - started
    box[check.name] = Outcome(check.name, ok, f"{detail} ({took:.1f} s)")


def run_checks(
    checks: Sequence[Check], secrets: Sequence[str] = (), deadline: float = DEADLINE_SECONDS
) -> list[Outcome]:
    box: dict[str, Outcome] = {}
    threads = [
        threading.Thread(target=_attempt, args=(c, box), name=f"check-{c.name}", daemon=True)
        for c in checks
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    outcomes = []
    for check in checks:
        found = box.get(check.name) or Outcome(check.name, False, f"no answer in {deadline:.0f} s")
        detail = found.detail
        for secret in secrets:
            detail = detail.replace(secret, "***")
        outcomes.append(Outcome(found.name, found.ok, detail[:300]))
    return outcomes


def report(outcomes: Sequence[Outcome], out: TextIO = sys.stdout) -> int:
    """The table; 0 when everything is fine, 1 naming what is broken (stderr)."""
    width = max(len(o.name) for o in outcomes)
    for o in outcomes:
        print(f"{o.name:<{width}}  {'ok' if o.ok else 'BROKEN':<6}  {o.detail}", file=out)
    broken = [o.name for o in outcomes if not o.ok]
    if broken:
        print(f"broken: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def check_supabase(db: Database, tables: tuple[str, ...]) -> Check:
    def run() -> str:
        try:
            for table in tables:
                db.peek(table)
        except (DatabaseUnavailable, DatabaseRejected) as exc:
            raise CheckFailed(str(exc)) from None
        return f"{', '.join(tables)} readable"

    return Check("supabase", run)


def check_wasabi(storage: Storage, bucket: str | None) -> Check:
    def run() -> str:
        if not bucket:
            raise CheckFailed("BUCKET_NAME is not set: nothing to check against")
        try:
            versioned = storage.is_versioned(bucket)
        except StorageUnavailable as exc:
            raise CheckFailed(str(exc)) from None
        return f"bucket {bucket} reachable{' (versioned)' if versioned else ''}"

    return Check("wasabi", run)
