"""Fixtures: the real local stack (PostgreSQL + gateway, moto server), clips
made by FFmpeg, and factories for uploads, jobs and messages.

A missing service (no FFmpeg, no PostgreSQL) is a skip on a laptop and a
failure in CI (`CI` set), so CI can never pass by testing nothing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from streaming.services import Services
from streaming.worker import run_loop
from tests import clips
from tests.stack import LocalStack, StackError, insert_upload
from utils.config import load_transcoder_settings
from utils.observability import EventLog
from utils.sqs_queue import WorkQueue
from utils.storage import Storage
from utils.supabase_db import Database

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "streaming" / "stream_worker_sqs.py"
BUCKET = "rugbycodex-media"
QUEUE = "rugbycodex-transcode-jobs"


def _require(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI is missing a required component: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    base = tmp_path_factory.mktemp("stack")
    local = LocalStack(base)
    try:
        local.start()
    except StackError as exc:
        _require(False, f"local stack could not start: {exc}")
    yield local
    local.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> clips.ClipFactory:
    _require(shutil.which("ffmpeg") is not None, "ffmpeg is not installed")
    return clips.ClipFactory(tmp_path_factory.mktemp("clips"))


@dataclass
class World:
    """One test's view of the stack: clients, the env for a worker, helpers."""

    stack: LocalStack
    env: dict[str, str]
    work_dir: Path
    s3: Any
    sqs: Any
    queue_url: str
    dlq_url: str

    # --- database ---------------------------------------------------------

    def sql(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.stack.postgres.dsn, autocommit=True, row_factory=dict_row) as c:
            cursor = c.execute(statement, args)
            return cursor.fetchall() if cursor.description else []

    def backdate(self, job_id: str, hours: float) -> None:
        """Make a job look untouched for `hours` (the updated_at trigger is bypassed)."""
        with psycopg.connect(self.stack.postgres.dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                "UPDATE jobs SET updated_at = now() - make_interval(secs => %s) WHERE id = %s",
                (hours * 3600, job_id),
            )

    def job(self, job_id: str) -> dict[str, Any]:
        return self.sql("SELECT * FROM jobs WHERE id = %s", job_id)[0]

    def asset(self, media_id: str) -> dict[str, Any]:
        return self.sql("SELECT * FROM media_assets WHERE id = %s", media_id)[0]

    # --- uploads, jobs and messages ----------------------------------------

    def upload(
        self,
        clip: Path | None,
        *,
        org_id: str | None = None,
        file_name: str = "match.mp4",
        storage_path: str | None = None,
        state: str = "queued",
        attempt: int = 1,
        send: bool = True,
        bucket: str = BUCKET,
    ) -> Upload:
        org_id = org_id or str(uuid.uuid4())
        media_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
        key = storage_path or f"orgs/{org_id}/uploads/{media_id}/raw/{file_name}"
        size = clip.stat().st_size if clip else 0
        if clip is not None:
            self.s3.upload_file(str(clip), BUCKET, key)
        insert_upload(
            self.stack.postgres.dsn, org_id=org_id, media_id=media_id, job_id=job_id, key=key,
            bucket=bucket, size=size, file_name=file_name, state=state, attempt=attempt,
        )  # fmt: skip
        made = Upload(job_id, media_id, org_id, key)
        if send:
            self.send(made.message())
        return made

    def send(self, body: dict[str, Any] | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)

    def queue_counts(self) -> tuple[int, int]:
        """(visible, in flight) messages in the transcode queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def work_dir_empty(self) -> bool:
        """No job files left (the folder may not even exist yet)."""
        return not self.work_dir.exists() or not any(self.work_dir.iterdir())

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def download_prefix(self, prefix: str, dest: Path) -> Path:
        for key in self.keys(prefix):
            target = dest / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(BUCKET, key, str(target))
        return dest

    # --- the worker ---------------------------------------------------------

    def run_worker(
        self, *args: str, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess:
        """The real daemon as a subprocess (`--once` unless told otherwise)."""
        return subprocess.run(
            [sys.executable, str(WORKER), *(args or ("--once",))],
            env={**self.base_env(), **self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def services(
        self, stop: threading.Event | None = None, decoders: frozenset[str] = frozenset(),
        **overrides: str,
    ) -> Services:  # fmt: skip
        """The worker's real clients, built in this process from the test's env."""
        settings = load_transcoder_settings({**self.env, **overrides})
        return Services(
            settings=settings,
            db=Database(settings.common.supabase_url, settings.common.supabase_key),
            storage=Storage.from_settings(settings.common),
            queue=WorkQueue(settings.queue_url, settings.aws_region),
            decoders=decoders,
            stop=stop or threading.Event(),
        )

    def run_once(self, services: Services | None = None, **overrides: str) -> list[dict[str, Any]]:
        """One pass of the real loop in this process; returns its events."""
        stream = io.StringIO()
        log = EventLog("transcode", environment="test", worker="test-worker", stream=stream)
        run_loop(services or self.services(**overrides), log, once=True)
        return events(stream.getvalue())

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
        return {k: os.environ[k] for k in keep if k in os.environ}


@dataclass(frozen=True)
class Upload:
    job_id: str
    media_id: str
    org_id: str
    key: str

    def message(self, **extra: Any) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "media_id": self.media_id,
            "org_id": self.org_id,
            "type": "transcode",
            **extra,
        }

    @property
    def prefix(self) -> str:
        return f"orgs/{self.org_id}/uploads/{self.media_id}/"


def events(output: str) -> list[dict[str, Any]]:
    """The JSON event lines of a worker's stdout."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("<") and ">" in line[:4]:
            line = line[line.index(">") + 1 :]
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


@pytest.fixture
def world(stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    stack.moto.reset()
    stack.postgres.truncate()
    assert stack.gateway is not None
    stack.gateway.delay_seconds = 0
    stack.gateway.clear_faults()  # no fault left over from another test
    work_dir = tmp_path / "work"
    env = stack.env(
        TRANSCODE_WORK_DIR=str(work_dir),
        TRANSCODE_PRESET="ultrafast",
        SQS_QUEUE_URL="",
        PROGRESS_WRITE_SECONDS="0.5",
        RETRY_BACKOFF_SECONDS="30",
    )
    for name, value in env.items():  # for in-process clients (botocore reads these)
        monkeypatch.setenv(name, value)
    s3, sqs = stack.clients()
    queue_url, dlq_url = stack.create_bucket_and_queue(BUCKET, QUEUE)
    env["SQS_QUEUE_URL"] = queue_url
    monkeypatch.setenv("SQS_QUEUE_URL", queue_url)
    yield World(stack, env, work_dir, s3, sqs, queue_url, dlq_url)


@pytest.fixture
def stop_event() -> threading.Event:
    return threading.Event()
