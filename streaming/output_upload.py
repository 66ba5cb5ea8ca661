"""Shipping a job's output to storage, overlapped with the encode.

FFmpeg writes every segment as `name.ts.tmp` and renames it when complete
(`-hls_flags temp_file`), so any `*.ts` in the output folder is finished and
can go up while FFmpeg works on the next one. When FFmpeg is done, what is
left goes up (storyboard, poster, variant playlists), and the master playlist
last of all: a half-uploaded stream is never announced. Afterwards anything
an earlier, unfinished attempt left in the folder is removed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from utils.storage import Check, Storage, TransferBatch, Upload

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
}
# Viewers fetch through a CDN that keeps what it is told to. Segments,
# sprites and the poster have names unique to their encode (OutputLayout), so
# they may be kept for ever; playlists and the storyboard VTT keep their names
# across re-transcodes, so a minute at most: a new stream shows up that soon.
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_PLAYLIST = "public, max-age=60"
SHIP_EVERY_SECONDS = 2.0
MASTER = "index.m3u8"  # uploaded last of all
LEGACY_PRESIGNED = "presigned/"  # the old playback function's copies: never ours


class OutputUploader:
    def __init__(self, storage: Storage, bucket: str, root: Path, prefix: str) -> None:
        self.storage = storage
        self.bucket = bucket
        self.root = root  # the local folder uploaded as `prefix`
        self.prefix = prefix  # orgs/{org}/uploads/{media}/streaming/
        self.bytes_sent = 0
        self.shipped: dict[str, int] = {}  # relative path -> size when it was sent
        self._sent: dict[str, Any] = {}  # key -> its transfer's future
        self._batch: TransferBatch | None = None
        self._last_scan = float("-inf")

    def _on_bytes(self, count: int) -> None:
        self.bytes_sent += count

    @property
    def batch(self) -> TransferBatch:
        if self._batch is None:
            self._batch = self.storage.batch(f"upload to s3://{self.bucket}", self._on_bytes)
        return self._batch

    def item(self, path: Path) -> Upload:
        relative = path.relative_to(self.root).as_posix()
        cache = CACHE_PLAYLIST if path.suffix in (".m3u8", ".vtt") else CACHE_IMMUTABLE
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return Upload(path, self.prefix + relative, content_type, cache)

    def ship_finished_segments(self, *, ffmpeg_done: bool = False, now: bool = False) -> None:
        """Start uploading segments FFmpeg has finished (at most every 2 s);
        raise if an earlier upload already failed, to stop a doomed job early.
        Once FFmpeg is done, its variant playlists are final and go up too
        (while the storyboard and the master playlist are being made)."""
        clock = time.monotonic()
        if clock - self._last_scan < SHIP_EVERY_SECONDS and not (ffmpeg_done or now):
            return
        self._last_scan = clock
        ready = sorted(self.root.glob("*.ts"))
        if ffmpeg_done:
            ready += sorted(p for p in self.root.glob("*.m3u8") if p.name != MASTER)
        for path in ready:
            if path.name not in self.shipped:
                self.shipped[path.name] = path.stat().st_size
                self._send(path)
        self.batch.raise_failures()

    def _send(self, path: Path) -> None:
        item = self.item(path)
        self._sent[item.key] = self.batch.upload(self.bucket, item)

    def landed(self, keys: list[str]) -> bool:
        """Every one of these keys has been uploaded, completely."""
        for key in keys:
            future = self._sent.get(key)
            if future is None or not future.done():
                return False
            try:
                future.result()
            except Exception:  # (raise_failures reports it)  # noqa: BLE001
                return False
        return True

    def forget(self, names: list[str]) -> None:
        """These files will be written again (their part starts over); call
        only when no transfer is in flight."""
        for name in names:
            self.shipped.pop(name, None)
            self._sent.pop(self.prefix + name, None)

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def finish(self, check: Check, before_master: Check = lambda: None) -> list[str]:
        """Upload the rest, then (once `before_master()` has passed what is
        up) the master playlist; returns every key written."""
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix != ".tmp")
        master = self.root / MASTER
        self.batch.wait(check)  # what went up during the encode has landed
        for path in files:
            relative = path.relative_to(self.root).as_posix()
            size = path.stat().st_size
            # Sent again if it changed since (an FFmpeg whose temp_file flag
            # does not cover segments would have exposed one half-written).
            if path != master and self.shipped.get(relative) != size:
                self.shipped[relative] = size
                self._send(path)
        self.batch.wait(check)
        before_master()
        self._send(master)
        self.batch.wait(check)
        return [self.item(path).key for path in files]

    def written_keys(self) -> tuple[str, ...]:
        """The keys this attempt has sent (or started to send)."""
        return tuple(self.prefix + name for name in self.shipped)

    def remove_except(self, keep: set[str]) -> int:
        """Delete every object under the prefix that is not in `keep`, except
        what the legacy playback function writes under `presigned/`."""
        removed = 0
        legacy = self.prefix + LEGACY_PRESIGNED
        for page in self.storage.list_objects(self.bucket, self.prefix):
            stale = [
                o for o in page
                if o.key not in keep and o.key.startswith(self.prefix)
                and not o.key.startswith(legacy)
            ]  # fmt: skip
            if stale:
                removed += len(stale) - len(self.storage.delete_objects(self.bucket, stale))
        return removed

    def close(self, cancel: bool = False) -> None:
        if self._batch is not None:
            self._batch.close(cancel=cancel)
            self._batch = None
