#!/usr/bin/env python3
"""The transcoder's own footprint: memory, idle CPU, idle SQS requests.

Runs the real daemon against the local stack, with SQS reached through a
pass-through loopback proxy that counts requests. Measures the worker
process alone (FFmpeg is a child and not counted): RSS idle, the peak RSS
during jobs, RSS after 1 and after N consecutive jobs, CPU while idle, and
SQS requests per idle hour (scaled from the idle window).

    .venv/bin/python bench/footprint.py [--jobs 50] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.clips import ffmpeg  # noqa: E402
from devstack.fault_proxy import FaultProxy  # noqa: E402
from devstack.stack import LocalStack, insert_upload  # noqa: E402

BUCKET, QUEUE = "rugbycodex-media", "rugbycodex-transcode-jobs"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stack = LocalStack(base / "stack").start()
        proxy = FaultProxy(stack.moto.port)
        proc = None
        try:
            queue_url, _ = stack.create_bucket_and_queue(BUCKET, QUEUE)
            s3, sqs = stack.clients()
            clip = base / "clip.mp4"
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "2",
                   "-c:v", "libx264", "-preset", "ultrafast", str(clip))  # fmt: skip
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **stack.env(
                SQS_QUEUE_URL=queue_url, AWS_ENDPOINT_URL_SQS=proxy.url,
                TRANSCODE_WORK_DIR=str(base / "work"))}  # fmt: skip
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "streaming" / "stream_worker_sqs.py")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            time.sleep(5)  # settled and polling
            requests_before = len(proxy.log)
            cpu_before, started = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(options.idle_seconds)
            idle_cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - started)
            idle_requests = len(proxy.log) - requests_before
            idle_rss = rss_mib(proc.pid)
            per_hour = idle_requests * 3600 / options.idle_seconds

            peak, after_first = idle_rss, 0.0
            for n in range(1, options.jobs + 1):
                org, media, job = (str(uuid.uuid4()) for _ in range(3))
                key = f"orgs/{org}/uploads/{media}/raw/clip.mp4"
                s3.upload_file(str(clip), BUCKET, key)
                insert_upload(stack.postgres.dsn, org_id=org, media_id=media, job_id=job,
                              key=key, bucket=BUCKET, size=clip.stat().st_size,
                              file_name="clip.mp4")  # fmt: skip
                sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
                    {"job_id": job, "media_id": media, "org_id": org}))  # fmt: skip
                assert proc.stdout is not None
                for line in proc.stdout:
                    peak = max(peak, rss_mib(proc.pid))
                    if '"transcode_job_settled"' in line or '"transcode_job_failed"' in line:
                        break
                if n == 1:
                    after_first = rss_mib(proc.pid)
            after_all = rss_mib(proc.pid)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
            proxy.close()
            stack.close()
    print(f"{'measure':<44} {'value':>10}")
    print(f"{'RSS idle (MiB)':<44} {idle_rss:>10.1f}")
    print(f"{'RSS peak during jobs (MiB)':<44} {peak:>10.1f}")
    print(f"{'RSS after 1 job (MiB)':<44} {after_first:>10.1f}")
    print(f"{f'RSS after {options.jobs} jobs (MiB)':<44} {after_all:>10.1f}")
    print(f"{'growth from job 1 to job ' + str(options.jobs) + ' (MiB)':<44} "
          f"{after_all - after_first:>10.1f}")  # fmt: skip
    print(f"{'CPU while idle (% of one core)':<44} {idle_cpu * 100:>10.2f}")
    print(f"{'SQS requests per idle hour':<44} {per_hour:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
