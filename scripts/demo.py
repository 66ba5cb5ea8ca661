#!/usr/bin/env python3
"""A full local run of the transcoder, with nothing from the live system.

Starts moto (SQS + the Wasabi stand-in) and PostgreSQL behind the
PostgREST-compatible gateway, generates a sample match clip, writes the rows
and the message the web app would, runs `stream_worker_sqs.py --once`, then
downloads the HLS output to `demo-output/` and prints where it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.clips import ffmpeg  # noqa: E402
from devstack.stack import LocalStack, insert_upload  # noqa: E402

BUCKET, QUEUE = "rugbycodex-media", "rugbycodex-transcode-jobs"


def make_clip(path: Path, seconds: int) -> None:
    """1080p50 test pattern with a tone: taller than every rung of either profile."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=50",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", str(path), timeout=None,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of the sample clip")
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rugbycodex-demo-") as tmp:
        base = Path(tmp)
        print("==> starting the local stack (PostgreSQL + gateway, moto)", flush=True)
        stack = LocalStack(base / "stack").start()
        try:
            queue_url, _ = stack.create_bucket_and_queue(BUCKET, QUEUE)
            s3, sqs = stack.clients()
            org, media, job = (str(uuid.uuid4()) for _ in range(3))
            key = f"orgs/{org}/uploads/{media}/raw/sample-match.mp4"
            clip = base / "sample-match.mp4"
            print(f"==> generating a {options.seconds}s 1080p sample upload", flush=True)
            make_clip(clip, options.seconds)
            s3.upload_file(str(clip), BUCKET, key)
            insert_upload(
                stack.postgres.dsn, org_id=org, media_id=media, job_id=job, key=key,
                bucket=BUCKET, size=clip.stat().st_size, file_name=clip.name,
            )  # fmt: skip
            message = {"job_id": job, "media_id": media, "org_id": org, "type": "transcode"}
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

            env = stack.env(SQS_QUEUE_URL=queue_url, TRANSCODE_WORK_DIR=str(base / "work"))
            print("==> python3 streaming/stream_worker_sqs.py --once", flush=True)
            started = time.monotonic()
            run = subprocess.run(
                [sys.executable, str(ROOT / "streaming" / "stream_worker_sqs.py"), "--once"],
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
            events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
            for event in events:
                if event["event_type"] in ("transcode_ffmpeg_started",):
                    print("    ffmpeg " + " ".join(event["command"][1:]))
                elif event["event_type"].endswith(("stage_finished", "job_settled", "job_failed")):
                    detail = {k: event[k] for k in ("stage", "seconds", "outcome") if k in event}
                    print(f"    {event['event_type']} {detail}")
            if run.returncode != 0:
                print(run.stderr, file=sys.stderr)
                return run.returncode

            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(stack.postgres.dsn, row_factory=dict_row) as conn:
                job_row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job,)).fetchone()
                asset = conn.execute(
                    "SELECT * FROM media_assets WHERE id = %s", (media,)
                ).fetchone()
            prefix = f"orgs/{org}/uploads/{media}/streaming/"
            out = options.output / media / "streaming"
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for item in keys:
                target = out / item[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(BUCKET, item, str(target))
        finally:
            stack.close()

    print()
    print(f"job {job}: state={job_row['state']} progress={job_row['progress']}")
    print(
        f"asset {media}: status={asset['status']} stage={asset['processing_stage']} "
        f"streaming_ready={asset['streaming_ready']} duration={asset['duration_seconds']}s"
    )
    if job_row["state"] != "succeeded":
        print(f"  {job_row['error_code']}: {job_row['error_message']}")
    for rendition in (job_row["result"] or {}).get("renditions", []):
        print(
            f"  {rendition['name']:>6} {rendition['width']}x{rendition['height']} "
            f"BANDWIDTH={rendition['bandwidth']} CODECS={rendition['codecs']}"
        )
    print(f"worker wall time: {seconds:.1f}s ({len(keys)} objects uploaded)")
    print(f"\nplayable HLS: {out / 'index.m3u8'}")
    print(f"  try: ffplay '{out / 'index.m3u8'}'   (or open it in VLC)")
    ok = job_row["state"] == "succeeded" and asset["streaming_ready"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
