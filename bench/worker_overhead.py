#!/usr/bin/env python3
"""A whole job through the worker against the bare FFmpeg run it makes.

Worker: `stream_worker_sqs.py --once` against the local stack (SQS receive,
download, transcode, upload, DB writes, delete; moto and PostgreSQL on
loopback), wall time of the process. Bare: the identical FFmpeg command line
(taken from the worker's own `transcode_ffmpeg_started` event) on a local
copy of the file. Median of N runs each, in the same invocation.

    .venv/bin/python bench/worker_overhead.py bench/out/match60.mp4 [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack import LocalStack, insert_upload  # noqa: E402

BUCKET, QUEUE = "rugbycodex-media", "rugbycodex-transcode-jobs"


def worker_run(stack: LocalStack, queue_url: str, clip: Path, work: Path) -> tuple[float, list]:
    s3, sqs = stack.clients()
    org, media, job = (str(uuid.uuid4()) for _ in range(3))
    key = f"orgs/{org}/uploads/{media}/raw/{clip.name}"
    s3.upload_file(str(clip), BUCKET, key)
    insert_upload(stack.postgres.dsn, org_id=org, media_id=media, job_id=job, key=key,
                  bucket=BUCKET, size=clip.stat().st_size, file_name=clip.name)  # fmt: skip
    body = {"job_id": job, "media_id": media, "org_id": org}
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin",
           **stack.env(SQS_QUEUE_URL=queue_url, TRANSCODE_WORK_DIR=str(work))}  # fmt: skip
    started = time.perf_counter()
    worker = [sys.executable, str(ROOT / "streaming" / "stream_worker_sqs.py"), "--once"]
    run = subprocess.run(worker, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(e["event_type"] == "transcode_job_succeeded" for e in events), run.stdout[-2000:]
    command = next(e["command"] for e in events if e["event_type"] == "transcode_ffmpeg_started")
    return seconds, command


def bare_run(command: list[str], clip: Path, base: Path) -> float:
    """The worker's FFmpeg command with its job folder moved to `base`."""
    job_dir = Path(next(a for a in command if a.startswith("file:"))[5:]).parent
    fresh = base / "job"
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "out" / "thumbnails").mkdir(parents=True)
    (fresh / "tiles").mkdir()
    shutil.copyfile(clip, fresh / "source")
    args = [a.replace(str(job_dir), str(fresh)) for a in command]
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stack = LocalStack(base / "stack").start()
        try:
            queue_url, _ = stack.create_bucket_and_queue(BUCKET, QUEUE)
            worker_times, bare_times = [], []
            for _ in range(options.runs):
                seconds, command = worker_run(stack, queue_url, options.clip, base / "work")
                worker_times.append(seconds)
                bare_times.append(bare_run(command, options.clip, base))
        finally:
            stack.close()
    worker, bare = statistics.median(worker_times), statistics.median(bare_times)
    print(f"input: {options.clip.name}, {options.runs} runs each")
    print(f"{'run':<34} {'median s':>9} {'spread':>8}")
    print(f"{'whole job through the worker':<34} {worker:>9.1f} "
          f"{max(worker_times) - min(worker_times):>8.1f}")  # fmt: skip
    print(f"{'bare FFmpeg, same arguments':<34} {bare:>9.1f} "
          f"{max(bare_times) - min(bare_times):>8.1f}")  # fmt: skip
    print(f"overhead ratio (worker / bare): {worker / bare:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
