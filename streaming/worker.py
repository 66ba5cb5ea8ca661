"""The transcoder daemon: flags, settings, clients, and the polling loop.

Shutdown order (SIGTERM/SIGINT): stop taking messages; a running job sees the
stop flag at its next check, stops FFmpeg or the transfer, hands the job back
(`queued`, message visible again) and cleans its work dir; then the event log
is flushed and the process exits 0.
"""

from __future__ import annotations

import argparse
import sys
import threading
import traceback
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from streaming.device_report import DeviceReporter
from streaming.fate import Event, Happened, decide
from streaming.ffmpeg_runner import ffmpeg_components
from streaming.job_dir import clean_work_dir, work_dir_problem
from streaming.part_worker import hand_back, handle_part
from streaming.preflight import transcoder_checks
from streaming.services import Services
from streaming.settle import Report, policy_of, settle
from streaming.transcode_job import handle_message
from utils.config import load_at_startup, load_transcoder_settings
from utils.observability import EventLog, build_event_log
from utils.preflight import report, run_checks
from utils.shutdown import EXIT_CONFIG, EXIT_OK, stop_on_signals
from utils.sqs_queue import Message, QueueUnavailable, WorkQueue
from utils.storage import Storage
from utils.supabase_db import Database
from utils.systemd_notify import Notifier

MAX_POLL_BACKOFF = 60
STOP_GRACE_SECONDS = 1.0


def poll(services: Services, log: EventLog, queue: WorkQueue | None = None) -> Message | None:
    """One long poll (SQS_WAIT_SECONDS, 20 s) of the job queue (or `queue`)
    that a stop request interrupts at once.

    The receive runs on a thread of its own while this thread feeds the
    watchdog and watches the stop flag. On stop it waits a moment for the
    poll; a message that still arrives is made visible again right away.
    """
    box: dict[str, Any] = {}

    def receive() -> None:
        try:
            box["message"] = (queue or services.queue).receive(services.settings.poll_seconds)
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc

    thread = threading.Thread(target=receive, name="sqs-poll", daemon=True)
    thread.start()
    while thread.is_alive():
        services.notifier.watchdog()
        thread.join(0.25)  # returns the moment a message (or nothing) comes back
        if services.stop.is_set():
            thread.join(STOP_GRACE_SECONDS)
            break
    error = box.get("error")
    if isinstance(error, QueueUnavailable):
        raise error
    if error is not None:  # anything else from the client: the loop survives it the same way
        raise QueueUnavailable(f"receive: {type(error).__name__}: {error}") from error
    message = box.get("message")
    if message is not None and services.stop.is_set():
        log.event("message_returned_at_stop", message_id=message.message_id)
        if queue is not None and queue is not services.queue:
            hand_back(queue, message, log)
        else:
            _hand_back_unread(services, message, log)
        return None
    return message


def _hand_back_unread(services: Services, message: Message, log: EventLog) -> None:
    """A message that arrived as the worker stops goes back as a fresh copy,
    so the stop costs it none of its receives."""
    event = Event(Happened.STOPPED, None, "arrived while the worker was stopping")
    plan = decide(event, message.receive_count, policy_of(services.settings))
    settle(plan, message, None, Report(), services, log.bind(message_id=message.message_id))


def handle_safely(
    services: Services, message: Message, log: EventLog, queue: WorkQueue | None = None
) -> None:
    """The last-resort boundary around one message: nothing that comes out of
    a message may end the daemon. The message is left as it is (it returns
    after its visibility, and its receive budget ends a message that keeps
    failing this way)."""
    try:
        if queue is not None and queue is services.parts_queue:
            handle_part(services, message, log)
        else:
            handle_message(services, message, log)
    except Exception:
        log.event("message_crashed", "error", traceback=traceback.format_exc()[-3000:])


def next_queue(services: Services, turn: int) -> WorkQueue:
    """What an idle worker polls: with a part queue, it first (a part of a
    started match before a new match), then the job queue, in turn; one
    long poll at a time, so idling costs no more requests than before."""
    if services.parts_queue is None or turn % 2 == 1:
        return services.queue
    return services.parts_queue


def run_loop(services: Services, log: EventLog, *, once: bool = False) -> int:
    clean_work_dir(services.settings.work_dir, log)
    services.notifier.ready("idle: polling SQS")
    failures = 0
    turn = 0
    while not services.stop.is_set():
        services.notifier.status("idle: polling SQS")
        queue = next_queue(services, turn)
        try:
            message = poll(services, log, queue)
        except QueueUnavailable as exc:
            services.health.failed("SQS", str(exc))
            failures += 1
            delay = min(MAX_POLL_BACKOFF, 2**failures)
            log.event("poll_failed", "warning", error=str(exc)[:300], retry_in_seconds=delay)
            if once:
                return EXIT_OK
            services.notifier.status(f"SQS unreachable, retrying in {delay}s")
            services.notifier.wait(services.stop, delay)
            continue
        failures = 0
        services.health.ok("SQS")
        if message is None:
            turn += 1
            if once and (services.parts_queue is None or turn > 1):
                return EXIT_OK
            continue
        turn = 0
        handle_safely(services, message, log.bind(message_id=message.message_id), queue)
        if once:
            return EXIT_OK
    services.notifier.stopping()
    log.event("worker_stopping")
    return EXIT_OK


def device_report(services: Services, log: EventLog) -> AbstractContextManager[object]:
    """The admin dashboard's device row, kept while the daemon runs (only
    where RC_DEVICE_NAME names the machine: ECS tasks come and go unlisted)."""
    settings = services.settings
    if not settings.device_name:
        return nullcontext()
    return DeviceReporter(
        Database(settings.common.supabase_url, settings.common.supabase_key, timeout=5.0),
        settings.device_name, settings.device_report_seconds, services.health,
        settings.work_dir, settings.disk_reserve_bytes, log,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stream_worker_sqs.py",
        description="Transcode queued uploads into adaptive HLS (SQS → Wasabi → FFmpeg).",
    )
    parser.add_argument("--once", action="store_true", help="handle at most one message, then exit")
    parser.add_argument(
        "--check", action="store_true",
        help="check the configuration, SQS, Wasabi, Supabase, FFmpeg and the work dir; "
        "touch no job; exit 1 naming what is broken",
    )  # fmt: skip
    options = parser.parse_args(argv)
    settings = load_at_startup(load_transcoder_settings)
    if settings is None:
        return EXIT_CONFIG
    if options.check:
        return report(run_checks(transcoder_checks(settings), settings.common.secrets()))
    problem = work_dir_problem(settings.work_dir)
    if problem:
        print(f"configuration error: {problem}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    log = build_event_log("transcode", settings.common)
    with stop_on_signals() as stop:
        services = Services(
            settings=settings,
            db=Database(settings.common.supabase_url, settings.common.supabase_key),
            storage=Storage.from_settings(settings.common),
            queue=WorkQueue(settings.queue_url, settings.aws_region),
            parts_queue=(
                WorkQueue(settings.parts_queue_url, settings.aws_region)
                if settings.parts_queue_url
                else None
            ),
            decoders=ffmpeg_components(settings.ffmpeg_bin, "decoders"),
            filters=ffmpeg_components(settings.ffmpeg_bin, "filters"),
            stop=stop,
            notifier=Notifier(),
        )
        hw = sorted(d for d in services.decoders if d.endswith("_nvv4l2dec"))
        log.event(
            "worker_started",
            once=options.once,
            work_dir=str(settings.work_dir),
            hardware_decoders=hw,
            profile=settings.profile,
            hdr_tonemapping={"zscale", "tonemap"} <= services.filters,
            ladder=[f"{r.height}p@{r.video_kbps}k" for r in settings.ladder],
        )
        try:
            with device_report(services, log):
                return run_loop(services, log, once=options.once)
        finally:
            log.close()
