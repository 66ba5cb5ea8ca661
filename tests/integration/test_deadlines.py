"""Every wait is bounded and interruptible: a stop request or a lost job ends
ffprobe at once, and a stop cuts the final writes' retries short."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from streaming.errors import JobAborted
from streaming.fate import Event, Happened, decide
from streaming.media_probe import probe
from streaming.settle import Report, Target, policy_of, settle
from tests.support import World, by_type, events
from utils.observability import EventLog
from utils.sqs_queue import Message


def test_a_stop_ends_a_hanging_probe_at_once() -> None:
    """ffprobe on a feed that never answers would wait for its 120-s timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/{'a' * 24}"
        stop = threading.Event()
        threading.Timer(1.0, stop.set).start()

        def check() -> None:
            if stop.is_set():
                raise JobAborted("worker is shutting down", lost=False)

        started = time.monotonic()
        with pytest.raises(JobAborted):
            probe("ffprobe", url, check)
        assert time.monotonic() - started < 30  # far below ffprobe's own 120 s


def test_a_stop_cuts_the_final_write_retries_short(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    got = world.sqs.receive_message(QueueUrl=world.queue_url, MessageSystemAttributeNames=["All"])
    raw = got["Messages"][0]
    message = Message(raw["MessageId"], raw["ReceiptHandle"], raw["Body"], 1)
    world.sql("UPDATE jobs SET state = 'running', attempt = 2 WHERE id = %s", upload.job_id)
    world.stack.gateway.fail_matching("PATCH", "succeeded", count=10_000, table="jobs")
    stop = threading.Event()
    stop.set()  # SIGTERM came while the worker was recording its success
    services = world.services(stop=stop, JOB_STALE_SECONDS="5")
    out = io.StringIO()
    log = EventLog("transcode", environment="test", worker="test", stream=out)
    plan = decide(Event(Happened.SUCCEEDED), 1, policy_of(services.settings))

    started = time.monotonic()
    settle(
        plan, message, Target(upload.job_id, upload.media_id, 2), Report(result={}), services, log
    )
    took = time.monotonic() - started

    assert took < 15  # the retries would wait 2 + 5 + 15 s
    assert len(by_type(events(out.getvalue()), "final_write_retry")) == 1
    assert world.job(upload.job_id)["state"] == "running"  # not recorded: the copy comes back
    assert world.queue_counts() == (0, 1)
