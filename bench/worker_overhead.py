#!/usr/bin/env python3
"""A whole job through the worker against the bare FFmpeg run it makes.

Worker: the daemon (`stream_worker_sqs.py`, started once and idle in its long
poll, as on the Jetson) against the local stack, moto and PostgreSQL on
loopback; a job's time runs from `SendMessage` until its message is gone from
the queue (receive, claim, download, probe, transcode, storyboard, upload, DB
writes, delete). Bare: the identical FFmpeg command line (from the worker's
own `transcode_audio_track_started` and `transcode_ffmpeg_started` events:
the audio track, then each part, one after the other) on a local copy of the
file (`file:` instead of the worker's loopback input feed). Runs are
interleaved (worker, bare, worker, ...); medians of N each, and the worker's
own stage times, so the overhead can be read stage by stage.

    .venv/bin/python bench/worker_overhead.py bench/out/match60.mp4 [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.stack import LocalStack, insert_upload  # noqa: E402

BUCKET, QUEUE = "rugbycodex-media", "rugbycodex-transcode-jobs"


class Daemon:
    """The worker as systemd runs it, its JSON log lines read as they come."""

    def __init__(self, env: dict[str, str], root: Path = ROOT, cpus: str | None = None) -> None:
        self.env = env
        pin = ["taskset", "-c", cpus] if cpus else []  # (its FFmpeg runs inherit the cores)
        self.proc = subprocess.Popen(
            [*pin, sys.executable, str(root / "streaming" / "stream_worker_sqs.py")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("worker_started", timeout=60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))

    def wait_for(self, suffix: str, timeout: float) -> list[dict[str, Any]]:
        """Every event up to and including the first whose type ends with `suffix`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if os.environ.get("BENCH_VERBOSE"):
                print(event["event_type"], event.get("error_code") or "", file=sys.stderr)
            seen.append(event)
            if event["event_type"].endswith(suffix):
                return seen

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def send_job(stack: LocalStack, queue_url: str, clip: Path) -> float:
    """Upload `clip` as a new video, send its job; returns when it was sent."""
    s3, sqs = stack.clients()
    org, media, job = (str(uuid.uuid4()) for _ in range(3))
    key = f"orgs/{org}/uploads/{media}/raw/{clip.name}"
    s3.upload_file(str(clip), BUCKET, key)
    insert_upload(stack.postgres.dsn, org_id=org, media_id=media, job_id=job, key=key,
                  bucket=BUCKET, size=clip.stat().st_size, file_name=clip.name)  # fmt: skip
    body = {"job_id": job, "media_id": media, "org_id": org}
    started = time.perf_counter()
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    return started


def wait_until_gone(stack: LocalStack, queue_url: str) -> None:
    """Until the queue holds no message, visible or not."""
    _, sqs = stack.clients()
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while any(
        int(v) for v in sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)[
            "Attributes"].values()
    ):  # fmt: skip
        time.sleep(0.005)


def worker_job(stack: LocalStack, queue_url: str, daemon: Daemon, clip: Path) -> dict[str, Any]:
    started = send_job(stack, queue_url, clip)
    events = daemon.wait_for("job_settled", timeout=3600)
    wait_until_gone(stack, queue_url)
    seconds = time.perf_counter() - started
    assert events[-1]["outcome"] == "succeeded", events[-1]
    stages = {
        e["stage"]: e["seconds"] for e in events if e["event_type"].endswith("stage_finished")
    }
    commands = [e["command"] for e in events
                if e["event_type"].endswith(("audio_track_started", "ffmpeg_started"))]  # fmt: skip
    return {"seconds": seconds, "stages": stages, "commands": commands}


def bare_run(commands: list[list[str]], clip: Path, base: Path) -> float:
    """The worker's FFmpeg commands (its audio track, then each part, one
    after the other) with its job folder moved to `base`, reading a local
    copy of the file instead of the worker's input feed."""
    job_dir = Path(commands[-1][commands[-1].index("-hls_segment_filename") + 1]).parent.parent
    fresh = base / "job"
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "out" / "thumbnails").mkdir(parents=True)
    (fresh / "tiles").mkdir()
    (fresh / "audio").mkdir()
    shutil.copyfile(clip, fresh / "source")
    started = time.perf_counter()
    for command in commands:
        args = [a.replace(str(job_dir), str(fresh)) for a in command]
        args[args.index("-i") + 1] = f"file:{fresh / 'source'}"
        args[args.index("-protocol_whitelist") + 1] = "file"
        for flag in ("-hls_segment_filename", "-frame_pts"):  # a part's own folders
            if flag in args:
                Path(args[args.index(flag) + 1]).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    jobs, bare_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stack = LocalStack(base / "stack").start()
        try:
            queue_url, _ = stack.create_bucket_and_queue(BUCKET, QUEUE)
            work = str(base / "work")
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   **stack.env(SQS_QUEUE_URL=queue_url, TRANSCODE_WORK_DIR=work)}  # fmt: skip
            daemon = Daemon(env)
            try:
                for _ in range(options.runs):
                    jobs.append(worker_job(stack, queue_url, daemon, options.clip))
                    bare_times.append(bare_run(jobs[-1]["commands"], options.clip, base))
            finally:
                daemon.stop()
        finally:
            stack.close()
    worker_times = [j["seconds"] for j in jobs]
    worker, bare = statistics.median(worker_times), statistics.median(bare_times)
    print(f"input: {options.clip.name}, {options.runs} runs each, interleaved")
    print(f"{'run':<44} {'median s':>9} {'spread':>8}")
    for name, times in (("whole job through the worker (send→deleted)", worker_times),
                        ("bare FFmpeg, same arguments, local file", bare_times)):  # fmt: skip
        print(f"{name:<44} {statistics.median(times):>9.2f} {max(times) - min(times):>8.2f}")
    print(f"overhead ratio (worker / bare): {worker / bare:.3f}")
    print("worker stages (median s):", ", ".join(
        f"{stage} {statistics.median(j['stages'].get(stage, 0.0) for j in jobs):.2f}"
        for stage in jobs[0]["stages"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
