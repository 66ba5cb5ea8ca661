"""The Jetson's row in the admin dashboard's device list (`compute_devices`).

Every DEVICE_HEARTBEAT_SECONDS the transcoder upserts its row by name
(`RC_DEVICE_NAME`): `online`, or `degraded` with `last_error` naming what is
wrong (Supabase, SQS or Wasabi unreachable lately, the work dir short of
space); the heartbeat time from the database's clock; the machine's load,
memory and, where the Jetson exposes them, GPU load and temperature. A clean
stop writes `offline`. All of it is best effort, on a thread and a database
client of its own: a failing or slow write never slows a job.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from utils.host_metrics import cpu_percent, cpu_sample, read_host
from utils.observability import EventLog
from utils.supabase_db import Database, DatabaseRejected, DatabaseUnavailable

GiB = 1024**3
PROBLEM_SECONDS = 300  # a failure not seen again for this long is taken as passed
SPARE_DISK_BYTES = 2 * GiB  # beyond DISK_RESERVE_MB: room for a match to start
SYSTEM_OF_CODE = {
    "DATABASE_UNAVAILABLE": "Supabase",
    "QUEUE_UNAVAILABLE": "SQS",
    "STORAGE_UNAVAILABLE": "Wasabi",
}


class Health:
    """What the worker has lately seen of the services it needs."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._problems: dict[str, tuple[str, float]] = {}

    def failed(self, system: str, error: str) -> None:
        with self._lock:
            self._problems[system] = (error[:200], self._clock())  # type: ignore[operator]

    def ok(self, *systems: str) -> None:
        with self._lock:
            for system in systems:
                self._problems.pop(system, None)

    def outcome(self, outcome: str, code: str | None) -> None:
        """A job's settlement: what it says of Supabase, SQS and Wasabi."""
        if code in SYSTEM_OF_CODE:
            self.failed(SYSTEM_OF_CODE[code], code)
        elif outcome == "succeeded":
            self.ok(*SYSTEM_OF_CODE.values())

    def problems(self) -> dict[str, str]:
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            return {
                system: error for system, (error, seen) in self._problems.items()
                if now - seen < PROBLEM_SECONDS
            }  # fmt: skip


def disk_problem(work_dir: Path, reserve_bytes: int) -> str | None:
    folder = work_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"work dir {work_dir}: {exc.strerror or exc}"
    if free < reserve_bytes + SPARE_DISK_BYTES:
        return f"work dir {work_dir}: only {free // (1024 * 1024)} MB free"
    return None


class DeviceReporter:
    def __init__(
        self, db: Database, name: str, interval: float, health: Health,
        work_dir: Path, reserve_bytes: int, log: EventLog,
    ) -> None:  # fmt: skip
        self.db, self.name, self.interval, self.health = db, name, interval, health
        self.work_dir, self.reserve_bytes, self.log = work_dir, reserve_bytes, log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-report", daemon=True)
        self._cpu = cpu_sample()
        self._failing = False

    def __enter__(self) -> DeviceReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop beating and say `offline`; bounded (a beat stuck on a hung
        Supabase is left to its daemon thread), so a stop stays quick."""
        self._stop.set()
        self._thread.join(2.0)
        self.beat(offline=True)

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(self.interval):
                return

    def row(self, *, offline: bool = False) -> dict[str, object]:
        sample = cpu_sample()
        metrics = read_host(cpu=cpu_percent(self._cpu, sample))
        self._cpu = sample or self._cpu
        problems = self.health.problems()
        disk = disk_problem(self.work_dir, self.reserve_bytes)
        if disk:
            problems["disk"] = disk
        status = "offline" if offline else ("degraded" if problems else "online")
        error = "; ".join(f"{k} unreachable: {v}" if k in SYSTEM_OF_CODE.values() else v
                          for k, v in sorted(problems.items()))  # fmt: skip
        return {
            "name": self.name,
            "status": status,
            "last_heartbeat_at": "now()",  # the database's clock, as the dashboard judges it
            "last_error": error or None,
            **metrics.row(),
        }

    def beat(self, *, offline: bool = False) -> bool:
        """One upsert; never raises."""
        try:
            self.db.upsert_device(self.row(offline=offline))
        except (DatabaseUnavailable, DatabaseRejected, OSError) as exc:
            self.health.failed("Supabase", str(exc))
            if not self._failing:  # once per outage, not every beat
                self.log.event("device_report_failed", "info", error=str(exc)[:200])
            self._failing = True
            return False
        self.health.ok("Supabase")
        self._failing = False
        return True
