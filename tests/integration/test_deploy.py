"""scripts/deploy.sh, run for real against a "device" folder on this machine
(JETSON_HOST=local): rsync, and only on the device what changed. `sudo`,
`systemctl` and `python3 -m pip` are stand-ins that record their calls (no
systemd runs here, and nothing is installed into the test machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, require

FAKES = {
    "sudo": '#!/bin/sh\necho "sudo $*" >> "$CALLS"\nexec "$@"\n',
    "systemctl": '#!/bin/sh\necho "systemctl $*" >> "$CALLS"\n',
    "python3": '#!/bin/sh\necho "python3 $*" >> "$CALLS"\n',
}


@pytest.fixture
def device(tmp_path: Path):
    require(shutil.which("rsync") is not None, "rsync is not installed")
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    for junk in (".env", ".venv/bin/python", "streaming/__pycache__/x.pyc",
                 "demo-output/out.ts", "bench/out/match.mp4"):  # fmt: skip
        (source / junk).parent.mkdir(parents=True, exist_ok=True)
        (source / junk).write_text("local only")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "units").mkdir()
    return tmp_path


def deploy(base: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = base / "calls"
    calls.write_text("")
    env = {
        **os.environ, "PATH": f"{base / 'bin'}:{os.environ['PATH']}", "CALLS": str(calls),
        "JETSON_HOST": "local", "JETSON_DIR": str(base / "jetson"),
        "SYSTEMD_UNIT_DIR": str(base / "units"),
    }  # fmt: skip
    run = subprocess.run(["bash", str(base / "src" / "scripts" / "deploy.sh"), *args], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return run, calls.read_text().splitlines()


def restarted(calls: list[str]) -> list[str]:
    return [c.split("restart ", 1)[1] for c in calls if c.startswith("systemctl restart")]


def test_first_deploy_copies_the_code_installs_and_restarts_everything(device: Path) -> None:
    run, calls = deploy(device)
    jetson = device / "jetson"
    assert (jetson / "streaming" / "stream_worker_sqs.py").is_file()
    assert (jetson / ".env.example").is_file()
    for never in (".env", ".venv", "demo-output", "bench/out", "streaming/__pycache__"):
        assert not (jetson / never).exists(), never
    assert "python3 -m pip install --user -r requirements.txt" in calls
    assert sorted(p.name for p in (device / "units").iterdir()) == [
        "rugbycodex-cleanup.service", "rugbycodex-transcoder-sqs.service",
    ]  # fmt: skip
    assert "systemctl daemon-reload" in calls
    assert restarted(calls) == ["rugbycodex-transcoder-sqs rugbycodex-cleanup"]
    assert any(c.startswith("systemctl status") for c in calls)


def test_a_second_deploy_of_the_same_tree_restarts_nothing(device: Path) -> None:
    deploy(device)
    run, calls = deploy(device)
    assert "(none)" in run.stdout
    assert not any("pip" in c or "daemon-reload" in c or "restart" in c for c in calls)


def test_only_the_changed_worker_restarts_and_a_dry_run_changes_nothing(device: Path) -> None:
    deploy(device)
    worker = device / "src" / "cleanup" / "cleanup_pass.py"
    worker.write_text(worker.read_text() + "\n# changed\n")

    run, calls = deploy(device, "--dry-run")
    assert "cleanup/cleanup_pass.py" in run.stdout and "rugbycodex-cleanup" in run.stdout
    deployed = device / "jetson" / "cleanup" / "cleanup_pass.py"
    assert calls == [] and "# changed" not in deployed.read_text()

    run, calls = deploy(device)
    assert restarted(calls) == ["rugbycodex-cleanup"]
    assert not any("pip" in c or "daemon-reload" in c for c in calls)
    assert "# changed" in deployed.read_text()


def test_a_changed_unit_is_installed_and_reloaded(device: Path) -> None:
    deploy(device)
    unit = device / "src" / "rugbycodex-transcoder-sqs.service"
    unit.write_text(unit.read_text() + "\n# changed\n")
    run, calls = deploy(device)
    assert "systemctl daemon-reload" in calls
    assert restarted(calls) == ["rugbycodex-transcoder-sqs"]
    assert "# changed" in (device / "units" / unit.name).read_text()
