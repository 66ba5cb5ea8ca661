"""The upload, fed to FFmpeg while it is still downloading.

A 4 GB match takes minutes to come down a club's line; FFmpeg reads it at
the speed it encodes, far slower. So the job does not wait for the whole
file: the download writes into the job's `source` file (concurrent ranged
parts through s3transfer, the end of the file first, where a camera's MP4
keeps its index), and a loopback-only HTTP server with a random path serves
that file to ffprobe and FFmpeg (and to no other process: see
`loopback_peer.py`), holding back each read until its bytes have
landed. FFmpeg seeks with HTTP ranges, as it would in a local file.

Failures stay the download's: when it fails, every waiting read ends, and
the job reports the storage error (transient), never the FFmpeg error that
the cut-off read causes.

A worker that encodes one part of another worker's job (streaming/
part_worker.py) starts the feed `ranged` instead: nothing is downloaded
ahead, and each read that finds its bytes missing fetches their block (and
the next few, as FFmpeg reads on) in one ranged GET. So it reads what its
part needs, the file's index and its own span, not the whole upload.
"""

from __future__ import annotations

import bisect
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from streaming.errors import JobError
from streaming.loopback_peer import is_own_process
from streaming.media_probe import FEED_SOCKET_BUFFER
from utils.storage import MiB, ObjectMissing, Storage, StorageUnavailable

HEAD_BYTES = 64 * 1024  # what a demuxer reads first
CHUNK = 256 * 1024  # most bytes a waiting read hands FFmpeg at once
FEED_PLACEHOLDER = "<input-feed>"  # what logs and errors show instead of the URL
WAIT_SLICE = 0.5  # seconds between looks at `closed` while a read waits
BLOCK = 2 * MiB  # what a ranged feed fetches at once
READ_AHEAD = 2  # blocks a ranged feed fetches beyond the one a read is at


class FeedClosed(Exception):
    """The feed ended (job over, or the download failed) before the bytes came."""


class _AllLanded(Exception):
    """Every byte is on disk: what the full download still sends is the tail again."""


class _Landed:
    """Which byte ranges of the file are on disk (merged, sorted [start, end))."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.ends, start)  # first range that ends at/after start
        j = bisect.bisect_right(self.starts, end)  # ranges from i to j-1 touch [start, end)
        if i < j:
            start, end = min(start, self.starts[i]), max(end, self.ends[j - 1])
        self.starts[i:j], self.ends[i:j] = [start], [end]

    def run_from(self, offset: int) -> int:
        """How many bytes from `offset` on are on disk without a gap."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.ends[i] - offset if i >= 0 and self.ends[i] > offset else 0

    def total(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends, strict=True))


class _Writer:
    """What s3transfer writes the parts into: a seekable file that records
    each landed range and wakes the readers waiting for it."""

    def __init__(self, feed: InputFeed) -> None:
        self.feed = feed
        self.position = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else self.position + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes) -> int:
        self.feed.write_at(self.position, data)
        self.position += len(data)
        return len(data)


class InputFeed:
    """One job's upload: downloading into `path`, served at `url` meanwhile."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, size)
        self._landed = _Landed()
        self._changed = threading.Condition()
        self.error: BaseException | None = None
        self.complete = False  # every byte is on disk
        self.seconds: float | None = None  # how long the download took, once complete
        self._started = time.monotonic()
        self.closed = False
        self.refused = 0  # requests from processes other than ours and our children
        self.fetched = 0  # bytes a ranged feed has fetched
        self._ranged: tuple[Storage, str, str] | None = None
        self._requested: set[int] = set()  # blocks a ranged feed has asked for
        self._pool: ThreadPoolExecutor | None = None
        token = secrets.token_urlsafe(18)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self, "/" + token))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/{token}"
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="input-feed", daemon=True
        ).start()  # (a short poll interval: close() waits for the loop to notice)

    # --- the download side ------------------------------------------------------------

    @property
    def tail_bytes(self) -> int:
        """How much of the end comes first: a camera MP4 keeps its index (moov)
        there, about 0.1 % of the file; 1/64 of it, 1-16 MiB, is ample."""
        return min(self.size, max(MiB, min(16 * MiB, self.size // 64)))

    def start(self, storage: Storage, bucket: str, key: str) -> None:
        """Download in the background: the end of the file, then all of it."""
        self._started = time.monotonic()

        def run() -> None:
            try:
                tail = self.tail_bytes
                if tail < self.size:
                    data = storage.read_range(bucket, key, self.size - tail, self.size)
                    if data is not None:  # else the full download brings it, later
                        self.write_at(self.size - tail, data)
                with storage.batch(f"download s3://{bucket}/{key}", None) as batch:
                    batch.download_into(bucket, key, _Writer(self), self.size)
                    batch.wait(self._raise_if_done)
                self._finish(None)
            except _AllLanded:
                self._finish(None)
            except ObjectMissing:
                self._finish(JobError("INPUT_NOT_FOUND", f"the upload left storage: {key}"))
            except BaseException as exc:  # handed to the job through `error`
                self._finish(exc)

        threading.Thread(target=run, name="input-download", daemon=True).start()

    @property
    def ranged(self) -> bool:
        return self._ranged is not None

    def start_ranged(self, storage: Storage, bucket: str, key: str) -> None:
        """Fetch only what is read, block by block (the file's first and last
        blocks at once: what a demuxer reads first)."""
        self._ranged = (storage, bucket, key)
        self._pool = ThreadPoolExecutor(READ_AHEAD + 1, thread_name_prefix="input-range")
        with self._changed:
            self._want(0, ahead=0)
            tail = max(0, self.size - self.tail_bytes)
            self._want(tail, ahead=(self.size - 1) // BLOCK - tail // BLOCK)

    def _want(self, offset: int, ahead: int = READ_AHEAD) -> None:
        """Ask for the block at `offset` and the `ahead` after it (under the lock)."""
        assert self._pool is not None
        first = offset // BLOCK
        for block in range(first, first + ahead + 1):
            if block * BLOCK >= self.size or block in self._requested:
                continue
            self._requested.add(block)
            self._pool.submit(self._fetch, block)

    def _fetch(self, block: int) -> None:
        assert self._ranged is not None
        storage, bucket, key = self._ranged
        start = block * BLOCK
        end = min(self.size, start + BLOCK)
        try:
            if self.closed:
                return
            data = storage.read_range(bucket, key, start, end)
            if data is None:  # (after botocore's own retries)
                raise StorageUnavailable(f"bytes {start}-{end - 1} of the upload could not be read")
            self.write_at(start, data)
            with self._changed:
                self.fetched += len(data)
        except FeedClosed:
            pass
        except BaseException as exc:  # every waiting read ends with it
            with self._changed:
                if not self.closed:
                    self.error = exc
                self._changed.notify_all()

    def write_at(self, offset: int, data: bytes) -> None:
        with self._changed:  # (never into a closed, perhaps reused, descriptor)
            if self.closed:
                raise FeedClosed("the job ended before the download")
            os.pwrite(self._fd, data, offset)
            self._landed.add(offset, offset + len(data))
            if not self.complete and self._landed.run_from(0) >= self.size:
                self.complete = True
                self.seconds = round(time.monotonic() - self._started, 3)
            self._changed.notify_all()

    def _finish(self, error: BaseException | None) -> None:
        with self._changed:
            if error is None and self._landed.run_from(0) < self.size:
                error = StorageUnavailable("the download ended with bytes missing")
            if self.closed or self.complete:  # nothing waits for the answer any more
                error = None
            self.error = error
            self._changed.notify_all()

    def _raise_if_done(self) -> None:
        """Ends the full download early: the job is over, or every byte is here."""
        with self._changed:
            if self.closed:
                raise FeedClosed("the job ended before the download")
            if self._landed.run_from(0) >= self.size:
                raise _AllLanded()

    # --- the job's side ----------------------------------------------------------------

    def landed_bytes(self) -> int:
        with self._changed:
            return self._landed.total()

    def wait_until(self, ready: Callable[[], bool], check: Callable[[], None]) -> None:
        """Wait until `ready()` (asked under the feed's lock), the download
        fails (raises its error) or `check()` raises (the job stops)."""
        while True:
            with self._changed:
                if self.error is not None:
                    raise self.error
                if ready():
                    return
                self._changed.wait(WAIT_SLICE)
            check()

    def wait_for_start(self, check: Callable[[], None]) -> None:
        """Until the first and last bytes are here: what a demuxer reads first."""
        head, tail = min(self.size, HEAD_BYTES), self.tail_bytes
        self.wait_until(
            lambda: (
                self._landed.run_from(0) >= head and self._landed.run_from(self.size - tail) >= tail
            ),
            check,
        )

    def wait_for_all(self, check: Callable[[], None]) -> None:
        """Until every byte is here (a ranged feed brings only what is read:
        it has nothing more on its way)."""
        if self.ranged:
            self.raise_error()
            return
        self.wait_until(lambda: self.complete, check)

    def raise_error(self) -> None:
        """The download's failure, if it has failed."""
        with self._changed:
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        """End the job's use of the feed: stop serving and downloading."""
        with self._changed:
            if self.closed:
                return
            self.closed = True  # the download thread sees it and cancels its transfers
            self._changed.notify_all()
            os.close(self._fd)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._server.shutdown()
        self._server.server_close()

    # --- the server side ----------------------------------------------------------------

    def read(self, offset: int, most: int, since: int = 0) -> bytes:
        """Up to `most` bytes from `offset`, waiting for them to land (for a
        request that began at `since`: a ranged feed reads ahead only once
        the request has read a block, so that the probes a demuxer makes
        here and there cost it one block each)."""
        with self._changed:
            while True:
                if self.closed or self.error is not None:
                    raise FeedClosed("the download did not finish")
                if self._ranged is not None:
                    self._want(offset, READ_AHEAD if offset - since >= BLOCK else 0)
                run = self._landed.run_from(offset)
                if run > 0:
                    return os.pread(self._fd, min(run, most), offset)
                self._changed.wait(WAIT_SLICE)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=A-` or `bytes=A-B` as [start, end); None if unusable."""
    if not header:
        return 0, size
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    if unit.strip() != "bytes" or not first.strip().isdigit() or "," in spec:
        return None
    start = int(first)
    end = int(last) + 1 if last.strip().isdigit() else size
    if start >= size or end <= start:
        return None
    return start, min(end, size)


def _handler_for(feed: InputFeed, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            super().setup()
            # What the kernel holds between us and FFmpeg is read ahead of
            # FFmpeg; a seek abandons it (and a ranged feed fetched it).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FEED_SOCKET_BUFFER)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != path:
                self.send_error(404)
                return
            if not is_own_process(self.client_address[1], self.server.server_address[1]):
                feed.refused += 1  # another process read the URL from /proc: not for it
                self.send_error(403)
                return
            span = _parse_range(self.headers.get("Range"), feed.size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{feed.size}")
                self.end_headers()
                return
            start, end = span
            self.send_response(206 if self.headers.get("Range") else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{feed.size}")
            self.end_headers()
            offset = start
            try:
                while offset < end:
                    data = feed.read(offset, min(CHUNK, end - offset), start)
                    self.wfile.write(data)
                    offset += len(data)
            except (FeedClosed, OSError):
                self.close_connection = True  # the reader sees the body cut short

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # FFmpeg's reads are not worth a log line each

    return Handler
