#!/usr/bin/env python3
"""One job on 1, 2 and 4 workers sharing its parts through the part queue,
each worker pinned to a core (taskset), and the fixed cost of a part.

All through the real daemons against the local stack (moto, PostgreSQL and
the gateway on loopback); a job's time runs from SendMessage until its
message is gone from the queue (the job settled). Each setting gets fresh
queues. Settings, one job each, in this order:
- whole: 1 worker on core 0, the match as one part (the baseline);
- 1 worker: 1 worker on core 0, the match in parts (--part-seconds);
- 2 workers: cores 0 and 1;
- 4 workers: two per core (more workers than cores: what they add beyond
  the cores is their overhead).
Fixed cost of a part = (1 worker - whole) / (parts - 1). The projection is
for a 2-hour match in 24 parts of 300 s on W equal workers (the Jetson plus
W - 1 ECS tasks of its speed): T(W) = ceil(24 / W) x (300 s / speed + fixed)
+ latency, where speed is the Jetson's 3.4x real time (a 2-hour match in
30-40 min alone, the figure the issue gives), fixed the measured cost per
part, and latency what sharing adds to a job as deployed: one long poll
(20 s) before the first part worker starts, one look (5 s) after the last
record (0 for W = 1).

    .venv/bin/python bench/shared_parts.py bench/out/match600_360p.mp4 --duration 600 \
        [--part-seconds 60]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.segmented import new_queue  # noqa: E402
from bench.worker_overhead import BUCKET, QUEUE, Daemon, send_job  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402

SETTINGS = (  # name, cores of each worker, parts
    ("whole", ["0"], False),
    ("1 worker", ["0"], True),
    ("2 workers", ["0", "1"], True),
    ("4 workers", ["0", "1", "0", "1"], True),
)
MATCH_PARTS = 24  # a 2-hour match in 5-minute parts
JETSON_SPEED = 3.4  # seconds of match per second: 2 hours in 30-40 min
SHARING_LATENCY = 25.0  # a long poll before the first part worker, a look after the last record


def shared_job(stack: LocalStack, base: Path, name: str, cores: list[str], part_seconds: int,
               clip: Path) -> float:  # fmt: skip
    """One job's seconds on workers pinned to `cores`."""
    tag = name.replace(" ", "-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           **stack.env(SQS_QUEUE_URL=new_queue(stack, tag), SQS_WAIT_SECONDS="2",
                       SQS_CHUNK_QUEUE_URL=new_queue(stack, tag + "-parts"),
                       TRANSCODE_PART_SECONDS=str(part_seconds))}  # fmt: skip
    daemons = [Daemon({**env, "TRANSCODE_WORK_DIR": str(base / f"{tag}-{i}")}, cpus=cpu)
               for i, cpu in enumerate(cores)]  # fmt: skip
    try:
        started = send_job(stack, env["SQS_QUEUE_URL"], clip)
        _, sqs = stack.clients()
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        url = env["SQS_QUEUE_URL"]
        while any(int(v) for v in sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=names)["Attributes"].values()):  # fmt: skip
            time.sleep(0.1)  # (a gentle look: moto shares the cores with the workers)
        return time.perf_counter() - started
    finally:
        for daemon in daemons:
            daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--part-seconds", type=int, default=60)
    parser.add_argument("--duration", type=float, required=True, help="the clip's seconds")
    options = parser.parse_args()
    parts = math.ceil(options.duration / options.part_seconds)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stack = LocalStack(base / "stack").start()
        try:
            stack.create_bucket_and_queue(BUCKET, QUEUE)
            for name, cores, in_parts in SETTINGS:
                part_seconds = options.part_seconds if in_parts else 7200
                times[name] = shared_job(stack, base, name, cores, part_seconds, options.clip)
                print(f"{name}: {times[name]:.1f} s", file=sys.stderr, flush=True)
        finally:
            stack.close()
    report(options, parts, times)
    return 0


def report(options: argparse.Namespace, parts: int, times: dict[str, float]) -> None:
    one = times["1 worker"]
    print(f"input: {options.clip.name} ({options.duration:.0f} s), {parts} parts of "
          f"{options.part_seconds} s; each worker pinned to one core")  # fmt: skip
    print(f"{'setting':<34} {'job s':>7} {'/ 1 worker':>11}")
    for name, _, _ in SETTINGS:
        label = "whole (1 worker, one part)" if name == "whole" else name
        print(f"{label:<34} {times[name]:>7.1f} {times[name] / one:>11.3f}")
    fixed = (one - times["whole"]) / (parts - 1)
    per_part = times["whole"] / parts  # encode time of one part's media on one core
    print(f"fixed cost per part: {fixed:.2f} s ({fixed / per_part:.1%} of a part's encode)")
    print(f"projection: a 2-hour match, {MATCH_PARTS} parts of 300 s, on the Jetson "
          f"({JETSON_SPEED}x real time) + W-1 ECS tasks of its speed")  # fmt: skip
    print(f"{'W':>3} {'minutes':>8} {'x Jetson alone':>15}")
    part = 300 / JETSON_SPEED + fixed
    alone = MATCH_PARTS * part
    for workers in (1, 2, 3, 4, 6):
        latency = 0 if workers == 1 else SHARING_LATENCY
        projected = math.ceil(MATCH_PARTS / workers) * part + latency
        print(f"{workers:>3} {projected / 60:>8.1f} {projected / alone:>15.3f}")


if __name__ == "__main__":
    sys.exit(main())
