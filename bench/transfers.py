#!/usr/bin/env python3
"""Uploads and downloads over a link with 50 ms of latency per request.

A loopback proxy (devstack/fault_proxy.py) delays every request by 50 ms on its
way to moto, as a club's internet line to Wasabi would, and caps each
connection's download at 64 Mbit/s (what one TCP stream gets over a long
path; more streams get more). Upload: a 2-hour match's output for one
rendition (1,200 segments + playlist + 48 sprites + VTT + poster; small
files, since latency dominates), through the worker's TransferBatch against
one file at a time. Download: the worker's input feed (the file's end first,
then concurrent 16-MiB ranged parts) against one plain GET, with the time
until FFmpeg could start reading.

    .venv/bin/python bench/transfers.py [--segments 1200] [--download-mb 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.fault_proxy import FaultProxy  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402
from streaming.input_feed import InputFeed  # noqa: E402
from utils.storage import MiB, Storage, Upload  # noqa: E402

BUCKET = "rugbycodex-media"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1200)
    parser.add_argument("--download-mb", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--connection-mbit", type=float, default=64.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stack = LocalStack(base / "stack").start()
        proxy = FaultProxy(stack.moto.port)
        per_connection = options.connection_mbit * 1e6 / 8
        proxy.add("throttle", count=10**9, method="GET", path_contains="/bench/input.bin",
                  seconds=options.latency, bytes_per_second=per_connection)  # fmt: skip
        proxy.add("delay", count=10**9, seconds=options.latency)
        try:
            stack.create_bucket_and_queue(BUCKET, "unused")
            storage = Storage(proxy.url, "us-east-1", "k", "s")
            files = []
            out = base / "out"
            out.mkdir()
            for i in range(options.segments):
                path = out / f"1080p_{i:05d}.ts"
                path.write_bytes(os.urandom(4096))
                files.append(Upload(path, f"bench/a/1080p_{i:05d}.ts", "video/mp2t", "x"))
            for name in ["1080p.m3u8", "storyboard.vtt", "poster.jpg"] + [
                f"storyboard_{i:03d}.jpg" for i in range(options.segments // 25)
            ]:
                path = out / name
                path.write_bytes(os.urandom(2048))
                files.append(Upload(path, f"bench/a/{name}", "application/octet-stream", "x"))

            started = time.perf_counter()
            storage.upload(BUCKET, files)
            concurrent = time.perf_counter() - started
            sample = files[:200]  # one at a time is slow: time a sample, scale it
            started = time.perf_counter()
            for item in sample:
                storage.client.upload_file(str(item.path), BUCKET, "bench/b/" + item.path.name)
            sequential = (time.perf_counter() - started) * len(files) / len(sample)

            big = base / "input.bin"
            big.write_bytes(os.urandom(options.download_mb * MiB))
            stack.clients()[0].upload_file(str(big), BUCKET, "bench/input.bin")
            size = options.download_mb * MiB
            started = time.perf_counter()
            feed = InputFeed(base / "ranged.bin", size)
            feed.start(storage, BUCKET, "bench/input.bin")
            feed.wait_for_start(lambda: None)
            first = time.perf_counter() - started
            feed.wait_for_all(lambda: None)
            ranged = time.perf_counter() - started
            feed.close()
            started = time.perf_counter()
            body = storage.client.get_object(Bucket=BUCKET, Key="bench/input.bin")["Body"]
            with open(base / "single.bin", "wb") as handle:
                for chunk in iter(lambda: body.read(MiB), b""):
                    handle.write(chunk)
            single = time.perf_counter() - started
        finally:
            proxy.close()
            stack.close()
    print(f"link: +{options.latency * 1000:.0f} ms per request (loopback proxy)")
    print(f"{'transfer':<44} {'ours s':>8} {'baseline s':>11} {'speed-up':>9}")
    print(f"{f'upload {len(files)} files (1 rendition of 2 h)':<44} {concurrent:>8.1f} "
          f"{sequential:>11.1f} {sequential / concurrent:>8.1f}x")  # fmt: skip
    print(f"{f'download {options.download_mb} MiB (16 MiB ranged parts)':<44} {ranged:>8.1f} "
          f"{single:>11.1f} {single / ranged:>8.1f}x")  # fmt: skip
    print(f"{'  of which until FFmpeg can start':<44} {first:>8.1f}")
    print("baselines: one file at a time (timed on 200 files, scaled); one plain GET; "
          f"download capped at {options.connection_mbit:.0f} Mbit/s per connection")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
