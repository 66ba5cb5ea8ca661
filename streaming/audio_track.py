"""The match's audio, encoded once for the whole file beside the parts.

AAC starts every encode with priming samples, so audio encoded part by part
would leave a gap or a click at every join. One FFmpeg run encodes the
whole track instead, cut into one slice per part at the parts' starts, and
each part's run copies its slice in. It needs only the audio packets, so it
runs far ahead of the video parts on a core of its own; a part waits for
its slice only if it ever catches up.

The track covers the whole match, silence where the upload has no sound
(streaming/ffmpeg_command.py `audio_command`), so every part has a slice.
A slice is handed out only while the download behind it has not failed: an
upload that stops coming ends FFmpeg's input as if the match had ended, and
the padding would then pass for the rest of the match's sound.
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
    def __init__(
        self, command: list[str], folder: Path, stall_seconds: int,
        source_failed: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self.command, self.folder, self.stall_seconds = command, folder, stall_seconds
        self.source_failed = source_failed  # raises if the upload's download failed
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audio-track", daemon=True)

    @classmethod
    def for_parts(
        cls, ffmpeg: str, source: str, opts: EncodeOptions, cuts: list[float], folder: Path,
        duration: float, stall: int, source_failed: Callable[[], None],
    ) -> AudioTrack:  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        command = audio_command(ffmpeg, source, opts, cuts, folder, duration)
        return cls(command, folder, stall, source_failed)

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

    def ready(self, k: int) -> Path | None:
        """Without waiting: part k's slice once it is complete (None: not
        yet); raises if the track failed, if the download behind it failed,
        or if the track ended without part k's slice."""
        name = f"slice_{k:05d}.nut"
        listed = name in self._listed()
        if not listed and not self._done.is_set():
            return None
        self.source_failed()  # (a slice made after the download failed is padding)
        if listed:
            return self.folder / name
        if self.error is not None:
            raise self.error
        if self.result is None or not self.result.ok:
            tail = (self.result.stderr_tail if self.result else "")[-300:]
            raise JobError("FFMPEG_FAILED", f"the audio track failed: {tail}")
        path = self.folder / name  # (the last slice: complete once the run is)
        if not path.is_file():
            raise JobError("FFMPEG_FAILED", f"the audio track ended before part {k}")
        return path

    def slice(self, k: int, check: Callable[[], None]) -> Path:
        """Part k's slice, once complete; `check()` runs while it waits."""
        while True:
            path = self.ready(k)
            if path is not None:
                return path
            check()
            self._done.wait(WAIT_SLICE)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
