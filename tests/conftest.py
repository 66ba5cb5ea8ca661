"""Fixtures: the real local stack (PostgreSQL + gateway, moto server), clips
made by FFmpeg, and factories for uploads, jobs and messages.

A missing service (no FFmpeg, no PostgreSQL) is a skip on a laptop and a
failure in CI (`CI` set), so CI can never pass by testing nothing.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import clips
from devstack.stack import LocalStack, StackError
from tests.support import BUCKET, QUEUE, World, require


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    base = tmp_path_factory.mktemp("stack")
    local = LocalStack(base)
    try:
        local.start()
    except StackError as exc:
        require(False, f"local stack could not start: {exc}")
    yield local
    local.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> clips.ClipFactory:
    require(shutil.which("ffmpeg") is not None, "ffmpeg is not installed")
    return clips.ClipFactory(tmp_path_factory.mktemp("clips"))


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
