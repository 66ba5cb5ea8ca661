"""The local stand-in for the live system: PostgreSQL + gateway, moto (S3, SQS).

Used by the test fixtures and by `scripts/demo.py`. Everything listens on
loopback only and lives in one temporary folder that `close()` removes.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import psycopg

from devstack.gateway import Gateway

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "schema.sql"
API_KEY = "local-service-role-key-for-tests"


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def postgres_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise StackError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(candidates[-1]).parent


class PostgresCluster:
    """A throwaway cluster: initdb, start on a free loopback port, load the schema."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "pgdata"
        self.port = free_port()
        self.bin = postgres_bin_dir()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                break

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise StackError(f"{' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                  "-U", "postgres", "--no-sync", "-E", "UTF8")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.base / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text())

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            except (StackError, subprocess.TimeoutExpired):
                pass

    def truncate(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE jobs, media_assets, media_cleanup_jobs, compute_devices")


class MotoServer:
    """moto in server mode as its own process, reached over loopback HTTP."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"moto-{self.port}.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Objects in memory: moto reads a whole object for every ranged
            # GET, from a temp file above 5 MB (a cost a real store does not
            # put on this machine's cores)
            env={**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(512 * 1024 * 1024)},
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def insert_upload(
    dsn: str, *, org_id: str, media_id: str, job_id: str, key: str, bucket: str,
    size: int, file_name: str, state: str = "queued", attempt: int = 1,
) -> None:  # fmt: skip
    """The rows the web app writes for one finished upload: asset + transcode job."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO media_assets (id, org_id, bucket, storage_path, file_name, mime_type,"
            " file_size_bytes, status, processing_stage, base_org_storage_path) VALUES"
            " (%s, %s, %s, %s, %s, 'video/mp4', %s, 'uploaded', 'uploaded', %s)",
            (media_id, org_id, bucket, key, file_name, size, f"orgs/{org_id}/uploads/"),
        )
        conn.execute(
            "INSERT INTO jobs (id, org_id, media_asset_id, type, state, attempt, payload)"
            " VALUES (%s, %s, %s, 'transcode', %s, %s, %s)",
            (job_id, org_id, media_id, state, attempt, json.dumps({"media_id": media_id})),
        )


class LocalStack:
    """PostgreSQL + gateway + moto, and the environment that points a worker at them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # Its own folder outside `base`: PostgreSQL runs as another user when
        # we are root, and that user cannot enter pytest's private folders.
        self.postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="rugbycodex-pg-")))
        self.moto = MotoServer(base / "moto")
        self.gateway: Gateway | None = None
        self.gateway_url = ""

    def start(self) -> LocalStack:
        try:
            self.postgres.start()
            self.moto.start()
            self.gateway = Gateway(self.postgres.dsn, API_KEY)
            self.gateway_url = self.gateway.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.moto.stop()
        self.postgres.stop()
        shutil.rmtree(self.postgres.base, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def clients(self) -> tuple[Any, Any]:
        """(s3, sqs) boto3 clients for this stack's moto server."""
        session = dict(
            region_name="us-east-1",
            aws_access_key_id="local-test-key",
            aws_secret_access_key="local-test-secret",
            endpoint_url=self.moto.url,
        )
        return boto3.client("s3", **session), boto3.client("sqs", **session)

    def create_bucket_and_queue(self, bucket: str, queue: str) -> tuple[str, str]:
        """The bucket, and the queue as production has it (1200 s, DLQ after 3)."""
        s3, sqs = self.clients()
        s3.create_bucket(Bucket=bucket)
        dlq_url = sqs.create_queue(QueueName=queue + "-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
        queue_url = sqs.create_queue(
            QueueName=queue,
            Attributes={"VisibilityTimeout": "1200", "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        return queue_url, dlq_url

    def env(self, **overrides: str) -> dict[str, str]:
        """Settings for a worker pointed at this stack (no real credentials)."""
        env = {
            "SUPABASE_URL": self.gateway_url,
            "SUPABASE_SERVICE_ROLE_KEY": API_KEY,
            "AWS_ACCESS_KEY_ID": "local-test-key",
            "AWS_SECRET_ACCESS_KEY": "local-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_SQS": self.moto.url,
            "WASABI_ENDPOINT": self.moto.url,
            "WASABI_REGION": "us-east-1",
            "WASABI_KEY": "local-wasabi-key",
            "WASABI_SECRET": "local-wasabi-secret",
            "BUCKET_NAME": "rugbycodex-media",
            "AXIOM_ENVIRONMENT": "test",
            "RC_DEVICE_NAME": "test-worker",
        }
        env.update(overrides)
        return env
