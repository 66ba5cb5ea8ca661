#!/usr/bin/env python3
"""S3 requests and throughput of one cleanup pass, per folder size.

Runs the real Cleaner against the local stack (moto server over loopback,
PostgreSQL + gateway) and counts every S3 call botocore makes. The baseline
in the same run deletes the same number of objects one DeleteObject call at
a time, so the last column is a ratio, not a machine-dependent speed.

    .venv/bin/python bench/cleanup_requests.py [--sizes 1000,2500,10000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from cleanup.cleanup_pass import Cleaner  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402
from utils.config import load_cleanup_settings  # noqa: E402
from utils.observability import EventLog  # noqa: E402
from utils.storage import Storage  # noqa: E402
from utils.supabase_db import Database  # noqa: E402

BUCKET = "rugbycodex-media"


def fill(s3: object, prefix: str, count: int) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"{prefix}s_{i:06d}.ts",
                                              Body=b"x"), range(count)))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2500,10000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp)).start()
        try:
            stack.create_bucket_and_queue(BUCKET, "unused")
            s3, _ = stack.clients()
            settings = load_cleanup_settings(stack.env())
            print(f"{'objects':>8} {'list':>5} {'delete':>7} {'other':>6} {'total':>6} "
                  f"{'obj/s':>8} {'one-by-one obj/s':>17} {'speed-up':>9}")  # fmt: skip
            for size in sizes:
                org, media = str(uuid.uuid4()), str(uuid.uuid4())
                prefix = f"orgs/{org}/uploads/{media}/"
                fill(s3, prefix, size)
                with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
                    conn.execute(
                        "INSERT INTO media_cleanup_jobs (media_asset_id, bucket, storage_path)"
                        " VALUES (%s, %s, %s)",
                        (media, BUCKET, prefix + "raw/m.mp4"),
                    )
                storage = Storage.from_settings(settings.common)
                calls: Counter[str] = Counter()
                storage.client.meta.events.register(
                    "before-call.s3",
                    lambda model, counter=calls, **kw: counter.update([model.name]),
                )
                log = EventLog("cleanup", environment="bench", worker="b", stream=io.StringIO())
                db = Database(settings.common.supabase_url, settings.common.supabase_key)
                cleaner = Cleaner(settings, db, storage, log, threading.Event())
                started = time.perf_counter()
                summary = cleaner.run_pass()
                seconds = time.perf_counter() - started
                assert summary.objects_deleted == size, summary
                # Baseline: the same count deleted one request per object.
                sample = min(size, 1000)
                fill(s3, prefix, sample)
                started = time.perf_counter()
                for i in range(sample):
                    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}s_{i:06d}.ts")
                single_rate = sample / (time.perf_counter() - started)
                lists, deletes = calls["ListObjectsV2"], calls["DeleteObjects"]
                other = sum(calls.values()) - lists - deletes
                rate = size / seconds
                print(f"{size:>8} {lists:>5} {deletes:>7} {other:>6} {sum(calls.values()):>6} "
                      f"{rate:>8.0f} {single_rate:>17.0f} {rate / single_rate:>8.1f}x")  # fmt: skip
        finally:
            stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
