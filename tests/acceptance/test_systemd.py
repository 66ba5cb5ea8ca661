"""The daemons as systemd services: units, notify protocol, stop, start-up."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, WORKER, World, require, start_worker, wait_for_event

CLEANER = ROOT / "cleanup" / "cleanup_worker.py"
UNITS = {"rugbycodex-transcoder-sqs.service": 2.5, "rugbycodex-cleanup.service": 1.5}


def _analyze(*args: str) -> subprocess.CompletedProcess:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(unit: str) -> None:
    result = _analyze("verify", f"./{unit}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit, limit", sorted(UNITS.items()))
def test_unit_exposure_is_within_its_limit(unit: str, limit: float) -> None:
    result = _analyze("security", "--offline=yes", f"./{unit}")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= limit
    text = (ROOT / unit).read_text()
    for needed in ("User=scribe", "EnvironmentFile=/home/scribe/rugbycodex/jetson_scripts/.env",
                   "Type=notify", "WatchdogSec=", "Restart=on-failure"):  # fmt: skip
        assert needed in text


class NotifySocket:
    """A stand-in for systemd's notify socket: a thread collects the datagrams."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for m in list(self.messages)):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never sent; got {self.messages[-20:]}")

    def close(self) -> list[str]:
        time.sleep(0.3)
        self._closed.set()
        return list(self.messages)

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "300000"}


def test_transcoder_speaks_the_notify_protocol_and_stops_fast_when_idle(
    world: World, tmp_path: Path
) -> None:
    notify = NotifySocket(tmp_path)
    proc = start_worker(world, **notify.env())
    try:
        notify.wait_for("READY=1")
        time.sleep(1.5)  # now inside a 20-s long poll
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        took = time.monotonic() - stopped_at
    finally:
        proc.kill()
    messages = notify.close()
    assert proc.returncode == 0
    assert took < 2.0, took
    assert any("STATUS=idle: polling SQS" in m for m in messages)
    assert sum(m == "WATCHDOG=1" for m in messages) >= 3  # fed during the long poll
    assert "STOPPING=1" in messages[-1]


def test_status_shows_the_job_its_stage_and_percent(world: World, media, tmp_path: Path) -> None:
    world.upload(media.h264(640, 360, 20))
    notify = NotifySocket(tmp_path)
    proc = start_worker(world, "--once", TRANSCODE_PRESET="veryfast", **notify.env())
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    statuses = [m for m in notify.close() if m.startswith("STATUS=job ")]
    assert any(re.match(r"STATUS=job [0-9a-f]{8}: transcode \d+%", m) for m in statuses)
    assert any(re.match(r"STATUS=job [0-9a-f]{8}: upload \d+%", m) for m in statuses)


def test_cleanup_worker_notifies_and_sleeps_interruptibly(world: World, tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(CLEANER)], env={**world.base_env(), **world.env, **notify.env()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        notify.wait_for("next pass")
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    messages = notify.close()
    assert proc.returncode == 0
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages and "STOPPING=1" in messages[-1]


def test_leftovers_of_a_crash_are_removed_at_start(world: World) -> None:
    world.work_dir.mkdir(parents=True)
    crashed = world.work_dir / str(uuid.uuid4())
    (crashed / "out").mkdir(parents=True)
    (crashed / "source").write_bytes(b"\0" * 1024)
    (crashed / "out" / "720p_00000.ts").write_bytes(b"\0" * 1024)
    foreign = world.work_dir / "not-ours"
    foreign.mkdir()

    run = world.run_worker("--once")

    assert run.returncode == 0, run.stderr
    assert not crashed.exists()
    assert foreign.exists()  # only folders this worker could have made
    assert "transcode_workdir_leftovers_removed" in run.stdout


def test_worker_outside_systemd_needs_no_socket(world: World) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    run = subprocess.run(
        [sys.executable, str(WORKER), "--once"], env={**env, **world.env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_sigterm_mid_job_returns_within_ten_seconds_via_wait_for_event(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    proc = start_worker(world, TRANSCODE_PRESET="slower")
    try:
        wait_for_event(proc, "transcode_stage_started")  # download
        wait_for_event(proc, "transcode_ffmpeg_started")
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        took = time.monotonic() - stopped_at
    finally:
        proc.kill()
    assert proc.returncode == 0 and took < 10
    assert world.job(upload.job_id)["state"] == "queued"
    assert world.asset(upload.media_id)["processing_stage"] == "uploaded"


def test_a_work_dir_the_sandbox_would_not_let_it_write_is_refused_at_start(
    world: World, tmp_path: Path
) -> None:
    """Under `ProtectSystem=strict` a work dir moved to another disk without
    `ReadWritePaths=` is read-only: one clear line and exit 78 (not restarted),
    instead of a daemon that fails every job. (Root writes anywhere here, so a
    path under a file stands in for the read-only one.)"""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    run = world.run_worker("--once", TRANSCODE_WORK_DIR=str(blocked / "transcode"))
    assert run.returncode == 78
    assert "TRANSCODE_WORK_DIR" in run.stderr and "ReadWritePaths=" in run.stderr


# What of the unit's [Service] section `systemd-run` can apply to a test run:
# the sandbox, not the service's identity, paths of the Jetson or its lifecycle.
NOT_FOR_A_TEST_RUN = (
    "Type", "NotifyAccess", "User", "Group", "SupplementaryGroups", "WorkingDirectory",
    "EnvironmentFile", "Environment", "ExecStart", "Restart", "RestartSec",
    "RestartPreventExitStatus", "KillSignal", "TimeoutStartSec", "TimeoutStopSec",
    "WatchdogSec", "BindReadOnlyPaths",
)  # fmt: skip


def unit_sandbox(unit: str) -> list[str]:
    section, found = "", []
    for line in (ROOT / unit).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            if key not in NOT_FOR_A_TEST_RUN:
                found += ["-p", line]
    return found


def test_the_worker_and_ffmpeg_run_under_the_units_sandbox(world: World, media) -> None:
    """The unit's own sandbox settings, applied by systemd to a real job."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemd-run") is None:
        pytest.skip("no running systemd here: the unit's sandbox cannot be applied")
    upload = world.upload(media.h264(320, 180, 2))
    readable = sorted({str(ROOT), sys.prefix, sys.base_prefix})
    env = {**world.base_env(), **world.env, "TRANSCODE_WORK_DIR": "/tmp/transcode"}
    command = [
        "systemd-run", "--wait", "--pipe", "--collect", "--quiet",
        *unit_sandbox("rugbycodex-transcoder-sqs.service"),
        "-p", "BindReadOnlyPaths=" + " ".join(readable),
        *[f"--setenv={k}={v}" for k, v in env.items()],
        sys.executable, str(WORKER), "--once",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert world.job(upload.job_id)["state"] == "succeeded"
    moved = [*command[:-3], "--setenv=TRANSCODE_WORK_DIR=/var/tmp/rugbycodex-work", *command[-3:]]
    refused = subprocess.run(moved, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 78 and "ReadWritePaths=" in refused.stderr
