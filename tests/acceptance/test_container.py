"""The ECS image (Containerfile): built, then run against the local stack
for one job, and stopped with SIGTERM as ECS stops a task (marker `slow`).

Built where a container builder is: buildah, on a Debian bookworm base that
mmdebstrap makes from Debian's own packages (no registry is needed; the
base is kept in buildah's store between runs). Elsewhere it is skipped,
saying why. The build trusts this machine's CA bundle (mounted over the
image's for the build only), as a build behind a TLS-inspecting proxy must.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, World, clip_with_tone, events, wait_for_event

pytestmark = pytest.mark.slow

BASE = "localhost/rugbycodex-base:bookworm"
IMAGE = "localhost/rugbycodex-transcoder:test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
WORKER = ["/app/.venv/bin/python", "/app/streaming/stream_worker_sqs.py"]


def _run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (command, result.stderr[-2000:])
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no container builder on this machine: {' and '.join(missing)} not "
                    "installed (apt install buildah mmdebstrap)")  # fmt: skip
    known = subprocess.run(["buildah", "inspect", "--type", "image", BASE], capture_output=True)
    if known.returncode != 0:
        rootfs = tmp_path_factory.mktemp("base") / "rootfs.tar"
        packages = "ffmpeg,python3,python3-venv,ca-certificates"
        _run("mmdebstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(rootfs))
        box = _run("buildah", "from", "scratch").stdout.strip()
        try:
            _run("buildah", "add", box, str(rootfs), "/")
            _run("buildah", "commit", box, BASE)
        finally:
            subprocess.run(["buildah", "rm", box], capture_output=True)
    _run("buildah", "bud", "--isolation", "chroot", "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
         "--build-arg", f"BASE_IMAGE={BASE}", "-t", IMAGE, "-f", str(ROOT / "Containerfile"),
         str(ROOT))  # fmt: skip
    return IMAGE


@pytest.fixture
def box(image: str) -> Iterator[str]:
    name = _run("buildah", "from", image).stdout.strip()
    yield name
    subprocess.run(["buildah", "rm", name], capture_output=True)


def _env_args(world: World) -> list[str]:
    """The test's settings as a task's environment (its own work dir, no .env)."""
    env = {**world.env, "TRANSCODE_WORK_DIR": "/work", "HW_DECODE": "off"}
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


def test_the_image_transcodes_a_job_and_stops_on_sigterm(
    world: World, media, box: str, tmp_path: Path
) -> None:
    whoami = _run("buildah", "run", "--isolation", "chroot", box, "--", "id", "-u")
    assert whoami.stdout.strip() == "10001"  # not root
    upload = world.upload(clip_with_tone(media, "container.mp4", seconds=8))
    once = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", *_env_args(world), box, "--", *WORKER,
         "--once"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr[-2000:]
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", (job, once.stdout[-2000:])
    assert job["result"]["decoder"] == "software"
    assert world.asset(upload.media_id)["streaming_ready"] is True

    # ECS stops a task with SIGTERM to the container's process (`buildah run`
    # would SIGKILL it): the worker ends its poll and exits 0
    daemon = subprocess.Popen(
        ["buildah", "run", "--isolation", "chroot", *_env_args(world), box, "--", *WORKER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_event(daemon, "transcode_worker_started", timeout=60)
        os.kill(_descendant(daemon.pid, WORKER), signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0
    assert "transcode_worker_stopping" in [e["event_type"] for e in events(out)]


def _descendant(pid: int, command: list[str]) -> int:
    """The process under `pid` that runs `command`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if [a.decode() for a in argv] == command:
            return child
        todo += children.get(child, [])
    raise AssertionError(f"no {command} under {pid}")
