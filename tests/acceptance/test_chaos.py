"""The long run: twenty jobs (five sent twice) through three workers that are
killed, stopped and restarted at random moments (seeded, bounded in time), at
production timing scaled to 1/30. Every job must end `succeeded`, recorded
once, with no message left in the queue or the dead-letter queue."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import WORKER, World, scaled, wait_for

pytestmark = pytest.mark.slow

SEED = 20261201
CHAOS_SECONDS = 75


class Fleet:
    """Three workers, each with its own work dir and log file."""

    def __init__(self, world: World, base: Path) -> None:
        self.world, self.base = world, base
        # The crash budget is raised: the fate under test is the messages',
        # not the budget's (test_only_real_crashes_count_towards_a_crash_loop).
        self.timing = {**scaled(world), "MAX_JOB_ATTEMPTS": "20"}
        self.procs: list[subprocess.Popen | None] = [None, None, None]
        self.logs: list[Path] = []

    def start(self, i: int) -> None:
        log = self.base / f"worker{i}-{len(self.logs)}.log"
        self.logs.append(log)
        env = {
            **self.world.base_env(), **self.world.env, **self.timing,
            "VERBOSE_LOGGING": "false", "TRANSCODE_WORK_DIR": str(self.base / f"work{i}"),
        }  # fmt: skip
        with open(log, "w") as out:
            self.procs[i] = subprocess.Popen(
                [sys.executable, str(WORKER)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def hit(self, i: int, sig: signal.Signals) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(sig)
        proc.wait(timeout=60)
        self.start(i)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                proc.wait(timeout=60)

    def events(self) -> list[dict]:
        found = []
        for log in self.logs:
            found += [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        return found


def test_twenty_jobs_through_three_workers_that_keep_dying(
    world: World, media, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    clip = media.h264(960, 540, 12)
    uploads = [world.upload(clip) for _ in range(20)]
    for upload in uploads[:5]:  # the upload-completion function sent these twice
        world.send(upload.message())
    fleet = Fleet(world, tmp_path)
    for i in range(3):
        fleet.start(i)

    def all_done() -> bool:
        rows = world.sql("SELECT count(*) AS n FROM jobs WHERE state = 'succeeded'")
        return rows[0]["n"] == len(uploads)

    hits = Counter()
    try:
        deadline = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < deadline and not all_done():
            time.sleep(rng.uniform(2.0, 6.0))
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM])
            fleet.hit(rng.randrange(3), sig)
            hits[sig.name] += 1
        wait_for(all_done, timeout=300, what="every job to succeed")
        empty = (0, 0)
        wait_for(
            lambda: world.queue_counts() == empty and world.queue_counts(world.dlq_url) == empty,
            timeout=120, what="no message left anywhere",
        )  # fmt: skip
    finally:
        fleet.stop()

    assert hits["SIGKILL"] and hits["SIGTERM"]
    log = fleet.events()
    recorded = Counter(
        e["job_id"] for e in log
        if e["event_type"] == "transcode_job_settled" and e.get("outcome") == "succeeded"
    )  # fmt: skip
    assert max(recorded.values()) == 1  # a success is written once (a kill may cut its log line)
    assert not world.sql("SELECT id FROM jobs WHERE state IN ('queued', 'running')")
    assert not [e for e in log if e.get("severity") in ("error", "critical")]
    for upload in uploads:
        assert world.asset(upload.media_id)["streaming_ready"] is True
    jobs = world.sql("SELECT attempt, result FROM jobs")
    crashed = sum(row["result"]["attempts"]["crashed"] for row in jobs)
    kinds = Counter(e["event_type"] for e in log)
    print(f"hits {dict(hits)}, takeovers after a crash {crashed}, claims "
          f"{sum(row['attempt'] - 1 for row in jobs)}, deferred {kinds['transcode_job_deferred']}, "
          f"duplicates {kinds['transcode_duplicate_dropped']}, "
          f"refreshed {kinds['transcode_message_refreshed']}")  # fmt: skip
    assert crashed > 0  # the kills did land inside jobs
