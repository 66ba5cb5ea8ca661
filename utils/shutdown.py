"""SIGTERM/SIGINT handling shared by both daemons.

The handlers only set an Event; every loop waits on it (`stop.wait(t)`) rather
than sleeping, so a stop request is seen within one wait step. The previous
handlers are restored on exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_FAILURES = 1  # --once: something failed
EXIT_CONFIG = 78  # EX_CONFIG: systemd should not restart into the same error


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    event = stop if stop is not None else threading.Event()

    def handler(signum: int, frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
