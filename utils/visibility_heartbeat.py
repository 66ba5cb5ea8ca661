"""Keeps a message invisible to other consumers while its job runs.

Every `interval` seconds the heartbeat sets the message's visibility to
`extension` seconds from now. A transient failure is retried sooner; the job
is only declared lost when SQS says the receipt handle is no longer valid
(another consumer received the message) or when the visibility we last set
has run out without a successful extension, since from then on another
consumer may hold it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, ReceiptInvalid, WorkQueue


class VisibilityHeartbeat:
    def __init__(
        self,
        queue: WorkQueue,
        message: Message,
        *,
        visible_until: float,
        interval: float = 240,
        extension: int = 300,
        retry_seconds: float = 15,
        log: EventLog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.message = message
        self.interval = interval
        self.extension = extension
        self.retry_seconds = retry_seconds
        self.log = log
        self.clock = clock
        self.visible_until = visible_until
        self.lost = threading.Event()
        self.lost_reason = ""
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility-heartbeat", daemon=True)

    def __enter__(self) -> VisibilityHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _declare_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost.set()
        self.log.event("heartbeat_lost", "warning", reason=reason)

    def beat(self) -> bool:
        """One extension; False once the message is lost. Called by the thread."""
        started = self.clock()
        try:
            self.queue.set_visibility(self.message, self.extension)
        except ReceiptInvalid as exc:
            self._declare_lost(f"receipt handle no longer valid: {str(exc)[:200]}")
            return False
        except QueueUnavailable as exc:
            if self.clock() >= self.visible_until:
                self._declare_lost("visibility expired while SQS was unreachable")
                return False
            self.log.event("heartbeat_retry", "info", error=str(exc)[:300])
            return True
        self.visible_until = started + self.extension
        self.beats += 1
        self.log.event("heartbeat_extended", "debug", visibility_seconds=self.extension)
        return True

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            failures_before = self.beats
            if not self.beat():
                return
            wait = self.interval if self.beats > failures_before else self.retry_seconds
            # Never sleep past the moment the message would become visible.
            wait = max(0.5, min(wait, self.visible_until - self.clock() - 1))
