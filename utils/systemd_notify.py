"""The systemd notify protocol (`Type=notify`), without a dependency.

The protocol is one datagram per message to the socket named by
`NOTIFY_SOCKET`: `READY=1` once the daemon is set up, `WATCHDOG=1` at least
every `WatchdogSec=` (systemd restarts a daemon that stops sending it), a
one-line `STATUS=` that `systemctl status` shows, and `STOPPING=1`. Outside
systemd (no `NOTIFY_SOCKET`) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address if address.startswith(("/", "\0")) else ""
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        wanted = watchdog_usec.isdigit() and watchdog_pid in ("", str(os.getpid()))
        # Ping at a third of the period, so one late ping is not fatal.
        self.watchdog_every = int(watchdog_usec) / 3e6 if wanted else None
        self._last_ping = float("-inf")
        self._status = ""
        self._lock = threading.Lock()

    def _send(self, text: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait on the receiver: a full socket drops the datagram.
                sock.setblocking(False)
                sock.connect(self.address)
                sock.send(text.encode("utf-8", "replace"))
        except OSError:
            pass  # systemd gone, busy or socket unusable: nothing useful to do

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))
        self._status = status

    def status(self, text: str) -> None:
        """Set the status line (sent only when it changes)."""
        line = " ".join(text.split())[:200]
        with self._lock:
            if line == self._status:
                return
            self._status = line
        self._send(f"STATUS={line}")

    def watchdog(self) -> None:
        """Tell systemd the main loop is alive (rate-limited; call it often)."""
        if self.watchdog_every is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last_ping < self.watchdog_every:
                return
            self._last_ping = now
        self._send("WATCHDOG=1")

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` for `stop`, keeping the watchdog fed; True if stopped."""
        deadline = time.monotonic() + seconds
        step = min(self.watchdog_every or 60.0, 60.0)
        while True:
            self.watchdog()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return stop.is_set()
            if stop.wait(min(step, remaining)):
                return True

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")
