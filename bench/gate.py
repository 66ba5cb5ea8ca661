#!/usr/bin/env python3
"""What sound in every segment and the publish gate cost a job.

Two workers through the real daemon against the local stack, one job at a
time, interleaved, the default settings (300-s parts): this worker, and the
worker as of BASELINE (one FFmpeg run per part that encoded video and copied
audio together, no check), checked out in a temporary worktree. A job's time
runs from SendMessage until its message is gone from the queue. This
worker's own `transcode_part_finished` events say how much of its time went
to the copy-only mux runs and to the check (ffprobe reading each part's
segments back, and the rules), so the table gives both the ratio of the two
workers and those shares of this worker's own job.

    .venv/bin/python bench/match_clip.py bench/out/match600_360p.mp4 --seconds 600 --size 640x360
    .venv/bin/python bench/gate.py bench/out/match600_360p.mp4 [--runs 2] [--baseline cf10f58]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.segmented import baseline_and_stack, new_queue  # noqa: E402
from bench.worker_overhead import Daemon, send_job, wait_until_gone  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402

BASELINE = "cf10f58"  # the last commit before the mux run and the gate


def timed_job(stack: LocalStack, daemon: Daemon, clip: Path) -> tuple[float, float, float]:
    """(job seconds, seconds in mux runs, seconds in checks) of one job."""
    queue_url = daemon.env["SQS_QUEUE_URL"]
    started = send_job(stack, queue_url, clip)
    events = daemon.wait_for("job_settled", timeout=3600)
    wait_until_gone(stack, queue_url)
    seconds = time.perf_counter() - started
    assert events[-1]["outcome"] == "succeeded", events[-1]
    parts = [e for e in events if e["event_type"].endswith("part_finished")]
    mux = sum(e.get("mux_seconds", 0.0) for e in parts)
    check = sum(e.get("check_seconds", 0.0) for e in parts)
    return seconds, mux, check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    options = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = {"before": [], "gate": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with baseline_and_stack(base, options.baseline) as (old, stack):

            def env(name: str) -> dict[str, str]:
                return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                        **stack.env(SQS_QUEUE_URL=new_queue(stack, name),
                                    TRANSCODE_WORK_DIR=str(base / name))}  # fmt: skip

            daemons = {"before": Daemon(env("before"), old), "gate": Daemon(env("gate"))}
            try:
                for _ in range(options.runs):
                    for name, daemon in daemons.items():
                        rows[name].append(timed_job(stack, daemon, options.clip))
                        print(f"{name}: {rows[name][-1][0]:.1f} s", file=sys.stderr, flush=True)
            finally:
                for daemon in daemons.values():
                    daemon.stop()
    report(options, rows)
    return 0


def report(options: argparse.Namespace, rows: dict[str, list[tuple[float, float, float]]]) -> None:
    before = statistics.median(r[0] for r in rows["before"])
    after = statistics.median(r[0] for r in rows["gate"])
    mux = statistics.median(r[1] for r in rows["gate"])
    check = statistics.median(r[2] for r in rows["gate"])
    print(f"clip: {options.clip.name}, {options.runs} runs each, medians, default settings")
    print(f"{'worker':<34}{'job s':>8}{'ratio':>8}{'mux s':>8}{'check s':>9}{'check %':>9}")
    print(f"{'before (' + options.baseline + ')':<34}{before:>8.1f}{1.0:>8.3f}")
    print(f"{'mux run + gate (this)':<34}{after:>8.1f}{after / before:>8.3f}"
          f"{mux:>8.1f}{check:>9.1f}{100 * check / after:>8.1f}%")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
