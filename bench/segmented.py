#!/usr/bin/env python3
"""A job in parts against the single FFmpeg run it replaced, and what a
restart costs.

Both through the real daemon against the local stack (moto, PostgreSQL and
the gateway on loopback), one job at a time, interleaved; a job's time runs
from SendMessage until its message is gone from the queue:
- single run: the worker as of BASELINE (a git revision before segmented
  transcoding, checked out in a temporary worktree), one FFmpeg run for the
  whole match;
- segmented: this worker (TRANSCODE_PART_SECONDS 300 as deployed, or
  `--part-seconds`).
Restart: the segmented job, its daemon stopped with SIGTERM (what
`systemctl restart` sends) once a given share of the uninterrupted job's
median time has passed, and a new daemon started at once. Seconds lost = the
interrupted job's whole time (send to gone) less the uninterrupted median; a
single run would lose everything it had done, that share of its own time.

    .venv/bin/python bench/match_clip.py bench/out/match600_360p.mp4 --seconds 600 --size 640x360
    .venv/bin/python bench/segmented.py bench/out/match600_360p.mp4 [--runs 2] \\
        [--baseline 635e479] [--restarts 25,50,75] [--part-seconds 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.worker_overhead import (  # noqa: E402
    BUCKET,
    QUEUE,
    Daemon,
    send_job,
    wait_until_gone,
    worker_job,
)
from devstack.stack import LocalStack  # noqa: E402

BASELINE = "635e479"  # the last commit with one FFmpeg run per job


def restarted_job(stack: LocalStack, queue_url: str, env: dict[str, str], clip: Path,
                  after: float) -> tuple[float, list[int]]:  # fmt: skip
    """The job, its daemon stopped after `after` s and another started;
    returns the job's whole time and the parts the second daemon adopted."""
    first = Daemon(env)
    started = send_job(stack, queue_url, clip)
    first.wait_for("job_started", timeout=600)
    time.sleep(max(0.0, after - (time.perf_counter() - started)))
    first.stop()
    second = Daemon(env)
    try:
        events = second.wait_for("job_settled", timeout=3600)
        wait_until_gone(stack, queue_url)
        seconds = time.perf_counter() - started
    finally:
        second.stop()
    adopted = next((e["parts"] for e in events if e["event_type"].endswith("parts_adopted")), [])
    return seconds, adopted


@contextmanager
def baseline_and_stack(base: Path, revision: str) -> Iterator[tuple[Path, LocalStack]]:
    """The worker at `revision` checked out in a temporary worktree, and the
    local stack with the bucket and the job queue; both gone afterwards."""
    old = base / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), revision],
                   check=True, capture_output=True)  # fmt: skip
    stack = LocalStack(base / "stack").start()
    try:
        stack.create_bucket_and_queue(BUCKET, QUEUE)
        yield old, stack
    finally:
        stack.close()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                       check=False, capture_output=True)  # fmt: skip


def new_queue(stack: LocalStack, name: str) -> str:
    """A queue of its own per daemon: a stopped daemon's long poll, still open
    at the server, would take the next message sent to its queue."""
    _, sqs = stack.clients()
    return sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1200"})["QueueUrl"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--restarts", default="25,50,75", help="stop points, % of the job's time")
    parser.add_argument("--part-seconds", type=int, default=300, help="TRANSCODE_PART_SECONDS")
    options = parser.parse_args()
    times: dict[str, list[float]] = {"single": [], "segmented": []}
    lost: list[tuple[int, float, list[int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with baseline_and_stack(base, options.baseline) as (old, stack):

            def env(name: str) -> dict[str, str]:
                return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                        **stack.env(SQS_QUEUE_URL=new_queue(stack, name),
                                    TRANSCODE_WORK_DIR=str(base / name),
                                    TRANSCODE_PART_SECONDS=str(options.part_seconds))}  # fmt: skip

            daemons = {"single": Daemon(env("single"), old), "segmented": Daemon(env("segmented"))}
            try:
                for _ in range(options.runs):
                    for name, daemon in daemons.items():
                        queue_url = daemon.env["SQS_QUEUE_URL"]
                        job = worker_job(stack, queue_url, daemon, options.clip)
                        times[name].append(job["seconds"])
                        print(f"{name}: {job['seconds']:.1f} s", file=sys.stderr, flush=True)
            finally:
                for daemon in daemons.values():
                    daemon.stop()
            whole = statistics.median(times["segmented"])
            for share in (int(s) for s in options.restarts.split(",")):
                restart_env = env(f"restart{share}")
                seconds, adopted = restarted_job(stack, restart_env["SQS_QUEUE_URL"], restart_env,
                                                 options.clip, whole * share / 100)  # fmt: skip
                lost.append((share, seconds - whole, adopted))
                print(f"restart at {share} %: {seconds:.1f} s", file=sys.stderr, flush=True)
    report(options, times, lost)
    return 0


def report(options: argparse.Namespace, times: dict[str, list[float]],
           lost: list[tuple[int, float, list[int]]]) -> None:  # fmt: skip
    single, segmented = statistics.median(times["single"]), statistics.median(times["segmented"])
    print(f"input: {options.clip.name}, {options.runs} runs each, interleaved; "
          f"baseline {options.baseline}")  # fmt: skip
    print(f"{'job (send → message gone)':<40} {'median s':>9} {'spread':>8}")
    for name, label in (("single", "single run (baseline worker)"),
                        ("segmented", f"segmented ({options.part_seconds}-s parts)")):  # fmt: skip
        runs = times[name]
        print(f"{label:<40} {statistics.median(runs):>9.1f} {max(runs) - min(runs):>8.1f}")
    print(f"segmented / single run: {segmented / single:.3f}")
    header = ("restart at", "lost s (segmented)", "lost s (single run)", "parts adopted")
    print(f"{header[0]:<12} {header[1]:>19} {header[2]:>20} {header[3]:>14}")
    for share, seconds, adopted in lost:
        print(f"{share:>9} % {seconds:>19.1f} {single * share / 100:>20.1f} {str(adopted):>14}")


if __name__ == "__main__":
    sys.exit(main())
