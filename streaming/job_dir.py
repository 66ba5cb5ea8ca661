"""A job's folder in the work dir: made with enough free space, held with a
lock for the job's life, removed at its end; leftovers of a crash removed
at start."""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streaming.errors import JobAborted, JobError
from utils.media_paths import canonical_uuid
from utils.observability import EventLog


def work_dir_problem(work_dir: Path) -> str | None:
    """Why the work dir cannot be used (made, written), or None.

    Under the unit's sandbox (`ProtectSystem=strict`) only the private /tmp
    is writable unless the unit says otherwise: a work dir moved to a bigger
    disk needs `ReadWritePaths=` too (DEPLOYMENT.md), and without it every job
    would fail; so start-up refuses it with this line instead."""
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".writable-"):
            pass
    except OSError as exc:
        return (
            f"TRANSCODE_WORK_DIR {work_dir} is not writable ({exc.strerror or exc}); "
            "under systemd the unit must allow it: ReadWritePaths= (DEPLOYMENT.md)"
        )
    return None


def clean_work_dir(work_dir: Path, log: EventLog) -> int:
    """Remove job folders left by a crash; a folder another live process holds stays."""
    removed = 0
    if not work_dir.is_dir():
        return 0
    for entry in work_dir.iterdir():
        if not entry.is_dir() or canonical_uuid(entry.name) != entry.name:
            continue  # only folders this worker could have made
        try:
            with open(entry / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except BlockingIOError:
            continue
        except OSError as exc:
            log.event("workdir_cleanup_failed", "warning", path=str(entry), error=str(exc))
    if removed:
        log.event("workdir_leftovers_removed", "info", folders=removed)
    return removed


def _check_space(work_dir: Path, need: int) -> None:
    free = shutil.disk_usage(work_dir).free
    if free < need:
        raise JobError(
            "DISK_TOO_SMALL", f"{free // 2**20} MiB free in {work_dir}, {need // 2**20} MiB needed"
        )


@contextmanager
def job_folder(job_dir: Path, need_bytes: int) -> Iterator[Path]:
    """The job's own empty folder, locked against another local process."""
    job_dir.parent.mkdir(parents=True, exist_ok=True)
    _check_space(job_dir.parent, need_bytes)
    job_dir.mkdir(exist_ok=True)
    with open(job_dir / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobAborted("another local process holds this job's folder", lost=True) from None
        try:
            for entry in job_dir.iterdir():
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            yield job_dir
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
