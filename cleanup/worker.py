"""The cleanup daemon: flags, settings, clients, and the pass-then-sleep loop.

Shutdown (SIGTERM/SIGINT): the sleep between passes is a wait on the stop
event, so the daemon exits within a moment; a pass in progress stops between
batches (a row is never left half-marked), the event log is flushed, exit 0.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from cleanup.cleanup_pass import Cleaner
from utils.config import CleanupSettings, load_at_startup, load_cleanup_settings
from utils.observability import build_event_log
from utils.preflight import Check, check_supabase, check_wasabi, report, run_checks
from utils.shutdown import EXIT_CONFIG, EXIT_FAILURES, EXIT_OK, stop_on_signals
from utils.storage import Storage
from utils.supabase_db import Database
from utils.systemd_notify import Notifier


def cleanup_checks(settings: CleanupSettings) -> list[Check]:
    common = settings.common
    every = f"a pass every {settings.interval_seconds} s, {settings.page_size} rows a page"
    return [
        Check("config", lambda: every),
        check_supabase(
            Database(common.supabase_url, common.supabase_key, timeout=8.0),
            ("media_cleanup_jobs",),
        ),
        check_wasabi(Storage.from_settings(common), common.bucket_name),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cleanup_worker.py",
        description="Delete deleted videos' folders from Wasabi (media_cleanup_jobs).",
    )
    parser.add_argument(
        "--once", action="store_true", help="run one pass and exit (1 if any row failed)"
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="list each row's folder and object count; change nothing",
    )  # fmt: skip
    parser.add_argument(
        "--check", action="store_true",
        help="check the configuration, Wasabi and Supabase; change nothing; "
        "exit 1 naming what is broken",
    )  # fmt: skip
    options = parser.parse_args(argv)
    settings = load_at_startup(load_cleanup_settings)
    if settings is None:
        return EXIT_CONFIG
    if options.check:
        return report(run_checks(cleanup_checks(settings), settings.common.secrets()))
    log = build_event_log("cleanup", settings.common)
    notifier = Notifier()
    with stop_on_signals() as stop:
        cleaner = Cleaner(
            settings,
            Database(settings.common.supabase_url, settings.common.supabase_key),
            Storage.from_settings(settings.common),
            log,
            stop,
            dry_run=options.dry_run,
            notifier=notifier,
        )
        notifier.ready("starting the first pass")
        log.event(
            "worker_started",
            once=options.once or options.dry_run,
            dry_run=options.dry_run,
            interval_seconds=settings.interval_seconds,
        )
        try:
            while True:
                summary = cleaner.run_pass()
                if options.once or options.dry_run:
                    return EXIT_OK if summary.ok else EXIT_FAILURES
                next_pass = datetime.now(timezone.utc) + timedelta(
                    seconds=settings.interval_seconds
                )
                notifier.status(
                    f"idle: last pass {summary.rows_done} done, {summary.rows_failed} failed; "
                    f"next pass {next_pass:%Y-%m-%d %H:%M} UTC"
                )
                if notifier.wait(stop, settings.interval_seconds):
                    break
            notifier.stopping()
            log.event("worker_stopping")
            return EXIT_OK
        finally:
            log.close()
