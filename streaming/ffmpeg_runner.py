"""Runs FFmpeg under supervision, as rq supervises its work-horse.

FFmpeg gets its own process group. The supervisor waits in short steps and,
between them, reads progress (`-progress pipe:1`), asks whether the job must
stop (shutdown, lost message) and watches the progress clock: a run that
makes no progress for `stall_seconds` is killed. Stopping is SIGTERM to the
group, then SIGKILL after a grace period. A failed run comes back with the
tail of FFmpeg's stderr as its reason.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the process group stop below still applies


# Resolved here, in the parent: between fork and exec the child of a
# threaded process must not take locks (dlopen's among them), so it only
# calls this already-bound function.
_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before exec: if the worker dies (even by SIGKILL),
    the kernel kills FFmpeg too, so no orphan keeps writing or burning CPU.
    (The kernel ties this to the thread that started FFmpeg: the worker's
    main thread, which lives as long as the worker.)"""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class RunResult:
    returncode: int
    stderr_tail: str
    stalled: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.stalled


class _ProgressReader(threading.Thread):
    """Reads `key=value` progress blocks; remembers the media time reached."""

    def __init__(self, stream: object) -> None:
        super().__init__(name="ffmpeg-progress", daemon=True)
        self.stream = stream
        self.out_seconds = 0.0
        self.last_change = time.monotonic()

    def run(self) -> None:
        for raw in self.stream:  # type: ignore[attr-defined]
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit():
                seconds = int(value) / 1_000_000
                if seconds > self.out_seconds:
                    self.out_seconds = seconds
                    self.last_change = time.monotonic()


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: str, limit: int = 1500) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", "replace").strip()


def _start(command: Sequence[str], stdout: object, stderr: object) -> subprocess.Popen:
    return subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )


def run_captured(
    command: Sequence[str],
    *,
    check: Callable[[], None] = lambda: None,
    timeout: float = 120,
    poll_seconds: float = 0.25,
) -> subprocess.CompletedProcess:
    """Run a short command (ffprobe) to the end, output captured, under the
    same supervision as FFmpeg: `check()` runs between short waits (a stop
    or a lost job ends it at once), and a run past `timeout` is killed and
    raises subprocess.TimeoutExpired."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = _start(command, out, err)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    proc.wait(poll_seconds)
                    break
                except subprocess.TimeoutExpired:
                    pass
                check()
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(list(command), timeout)
        except BaseException:
            _stop_group(proc)
            raise
        out.seek(0)
        err.seek(0)
        text = (out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
        return subprocess.CompletedProcess(list(command), proc.returncode, *text)


def _supervise(
    proc: subprocess.Popen,
    reader: _ProgressReader,
    check: Callable[[], None],
    on_progress: Callable[[float], None],
    stall_seconds: float,
    poll_seconds: float,
) -> bool:
    """Wait for FFmpeg in short steps; True when it was stopped for stalling."""
    try:
        while True:
            try:
                proc.wait(poll_seconds)
                return False
            except subprocess.TimeoutExpired:
                pass
            check()
            on_progress(reader.out_seconds)
            if time.monotonic() - reader.last_change > stall_seconds:
                _stop_group(proc)
                return True
    except BaseException:
        _stop_group(proc)
        raise


def run_ffmpeg(
    command: Sequence[str],
    *,
    check: Callable[[], None] = lambda: None,
    on_progress: Callable[[float], None] = lambda seconds: None,
    stall_seconds: float = 600,
    poll_seconds: float = 0.5,
) -> RunResult:
    """Run `command`; `check()` raises JobAborted to stop it early."""
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix="ffmpeg-stderr-", delete=False) as err:
        err_path = err.name
    try:
        with open(err_path, "wb") as stderr:
            proc = _start(command, subprocess.PIPE, stderr)
        reader = _ProgressReader(proc.stdout)
        reader.start()
        try:
            stalled = _supervise(proc, reader, check, on_progress, stall_seconds, poll_seconds)
        finally:
            reader.join(timeout=2)
            if proc.stdout is not None:
                proc.stdout.close()
        on_progress(reader.out_seconds)
        return RunResult(proc.returncode, _tail(err_path), stalled, time.monotonic() - started)
    finally:
        os.unlink(err_path)


def ffmpeg_components(ffmpeg: str, kind: str) -> frozenset[str]:
    """Names this FFmpeg build lists under `-decoders` or `-filters`."""
    try:
        result = subprocess.run(
            [ffmpeg, "-hide_banner", f"-{kind}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        # " V..... h264_nvv4l2dec  …" (decoders, encoders), " TS. zscale  V->V  …" (filters)
        if len(parts) >= 2 and 3 <= len(parts[0]) <= 6 and set(parts[0]) <= set("VASDFTCXBI.|"):
            names.add(parts[1])
    return frozenset(names)
