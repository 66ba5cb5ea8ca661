"""The match's audio, encoded once for the whole file beside the parts.

AAC starts every encode with priming samples, so audio encoded part by part
would leave a gap or a click at every join. One FFmpeg run encodes the
whole track instead, cut into one slice per part at the parts' starts, and
each part's run copies its slice in. It needs only the audio packets, so it
runs far ahead of the video parts on a core of its own; a part waits for
its slice only if it ever catches up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from streaming.errors import JobAborted, JobError
from streaming.ffmpeg_command import EncodeOptions, audio_command
from streaming.ffmpeg_runner import RunResult, run_ffmpeg

WAIT_SLICE = 0.2  # seconds between looks for a slice


class AudioTrack:
    def __init__(self, command: list[str], folder: Path, stall_seconds: int) -> None:
        self.command, self.folder, self.stall_seconds = command, folder, stall_seconds
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audio-track", daemon=True)

    @classmethod
    def for_parts(
        cls, ffmpeg: str, source: str, opts: EncodeOptions, cuts: list[float], folder: Path,
        stall: int,
    ) -> AudioTrack:  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        return cls(audio_command(ffmpeg, source, opts, cuts, folder), folder, stall)

    def start(self) -> AudioTrack:
        self._thread.start()
        return self

    def _check(self) -> None:
        if self._stop.is_set():
            raise JobAborted("the job ended", lost=False)

    def _run(self) -> None:
        try:
            self.result = run_ffmpeg(
                self.command, check=self._check, stall_seconds=self.stall_seconds
            )
        except BaseException as exc:  # surfaced to the job by slice()
            self.error = exc
        finally:
            self._done.set()

    def _listed(self) -> set[str]:
        listing = self.folder / "slices.csv"
        if not listing.is_file():
            return set()
        return {line.split(",")[0] for line in listing.read_text().splitlines() if line}

    def ready(self, k: int) -> tuple[bool, Path | None]:
        """Without waiting: (whether part k's slice is settled, the slice, or
        None if the audio ends before part k); raises if the track failed."""
        name = f"slice_{k:05d}.nut"
        if name in self._listed():
            return True, self.folder / name
        if not self._done.is_set():
            return False, None
        if self.error is not None:
            raise self.error
        if self.result is None or not self.result.ok:
            tail = (self.result.stderr_tail if self.result else "")[-300:]
            raise JobError("FFMPEG_FAILED", f"the audio track failed: {tail}")
        path = self.folder / name  # (the last slice: complete once the run is)
        return True, path if path.is_file() else None

    def slice(self, k: int, check: Callable[[], None]) -> Path | None:
        """Part k's slice, once complete (None: the audio ends before part k);
        `check()` runs while it waits."""
        while True:
            settled, path = self.ready(k)
            if settled:
                return path
            check()
            self._done.wait(WAIT_SLICE)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
