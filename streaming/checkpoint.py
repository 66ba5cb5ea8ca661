"""Where finished parts are recorded, so that the next attempt (after a
restart, a crash, a lost lease) encodes only the rest.

The records live in the video's own folder, beside `streaming/`:
`transcode-parts/part_00003.json` (streaming/parts.py) and `part_00003.tar`
(the part's storyboard tiles, and the poster if the part made it). No
playlist names them, so no player fetches them; they are removed once the
master playlist is up. A record is written only after every segment it
lists has landed; a resumed attempt adopts it only if it belongs to the
same plan and every segment is still there with its recorded size.

Where a job's parts are shared between workers (streaming/part_sharing.py)
the same folder holds what the owner published (`shared.json`), the audio
slices of the published parts (`part_00003.nut`) and the mark a part worker
leaves when its part failed for good (`part_00003.failed`). Each encode of
a part names its segments with a tag of its own, so a part encoded twice
never has its bytes mixed: a record names exactly the segments of one run.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streaming.parts import MAX_RECORD_BYTES, PartPlan, PartRecord
from utils.observability import EventLog
from utils.storage import ObjectMissing, Storage, StorageUnavailable, StoredObject

FOLDER = "transcode-parts/"
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
_RECORD = re.compile(r"part_(\d{5})\.json")
_MEMBER = re.compile(r"tile_\d{5}\.jpg|poster_[0-9a-z]{1,16}\.jpg")
_FAILED = re.compile(r"part_(\d{5})\.failed")
SHARED = "shared.json"
AUDIO_MODES = ("slice", "none")  # a part's audio: its slice of the track, or no track
MAX_SHARED_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SharedParts:
    """What the job's owner put on the part queue, and each such part's audio."""

    fingerprint: str
    count: int
    published: dict[int, str]

    def to_json(self) -> bytes:
        return json.dumps(
            {"fingerprint": self.fingerprint, "count": self.count,
             "published": {str(k): v for k, v in sorted(self.published.items())}},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> SharedParts:
        """Read back from storage; ValueError for anything unexpected."""
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a shared-parts record")
        fp, count, published = raw.get("fingerprint"), raw.get("count"), raw.get("published")
        if not (isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{32}", fp)):
            raise ValueError("bad fingerprint")
        if not (type(count) is int and 1 <= count <= 100_000):
            raise ValueError("bad part count")
        if not isinstance(published, dict):
            raise ValueError("bad published parts")
        parts: dict[int, str] = {}
        for key, mode in published.items():
            if not (re.fullmatch(r"\d{1,5}", key) and int(key) < count and mode in AUDIO_MODES):
                raise ValueError("bad published part")
            parts[int(key)] = mode
        return cls(fp, count, parts)


@dataclass
class _Pending:
    record: PartRecord
    keys: list[str]  # segment keys that must land first
    archive: Path


@dataclass
class PartBook:
    """One attempt's view of the parts: those adopted from earlier attempts
    and those it finished itself, recorded as soon as their uploads land."""

    storage: Storage
    bucket: str
    media_prefix: str  # orgs/{org}/uploads/{media}/
    plan: PartPlan
    log: EventLog
    adopted: dict[int, PartRecord] = field(default_factory=dict)
    finished: dict[int, PartRecord] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    recorded: set[int] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)  # keys written to share parts
    refused: set[tuple[str, int]] = field(default_factory=set)  # (key, size) not adoptable

    @property
    def folder(self) -> str:
        return self.media_prefix + FOLDER

    def key(self, k: int, suffix: str) -> str:
        return part_key(self.media_prefix, k, suffix)

    def record(self, k: int) -> PartRecord:
        return self.adopted.get(k) or self.finished[k]

    def done(self, k: int) -> bool:
        return k in self.adopted or k in self.finished

    @property
    def shared_key(self) -> str:
        return self.folder + SHARED

    def read_shared(self) -> SharedParts | None:
        return read_shared(self.storage, self.bucket, self.media_prefix, self.log)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """One object that shares the job's parts (removed with the records)."""
        self.storage.put_small(self.bucket, key, data, content_type)
        self.shared.add(key)

    def read_record(self, key: str, renditions: list[str]) -> PartRecord | None:
        """The record at `key` if it is readable and of this plan's parts."""
        try:
            record = PartRecord.from_json(
                self.storage.read_small(self.bucket, key, MAX_RECORD_BYTES), renditions
            )
        except (ValueError, UnicodeDecodeError, ObjectMissing) as exc:
            self.log.event("part_record_ignored", "warning", key=key, error=str(exc)[:200])
            return None
        match = _RECORD.fullmatch(key[len(self.folder) :])
        if match and record.part == int(match.group(1)) and record.part < self.plan.count:
            return record
        return None

    def refresh(self, renditions: list[str]) -> tuple[list[int], list[int]]:
        """Adopt the parts other workers recorded since the last look, whole
        in storage; returns (adopted now, parts marked failed)."""
        found = _sizes(self.storage, self.bucket, self.folder)
        fresh = []
        for key in sorted(found):
            match = _RECORD.fullmatch(key[len(self.folder) :])
            if (
                match
                and not self.done(int(match.group(1)))
                and (key, found[key]) not in self.refused
            ):
                record = self.read_record(key, renditions)
                if record is not None and record.fingerprint == self.plan.fingerprint:
                    fresh.append(record)
                else:  # (not read again until it is written again)
                    self.refused.add((key, found[key]))
        failed = sorted(
            int(m.group(1)) for key in found if (m := _FAILED.fullmatch(key[len(self.folder) :]))
        )
        return self._adopt(fresh, found), [k for k in failed if not self.done(k)]

    def _adopt(self, records: list[PartRecord], found: dict[str, int]) -> list[int]:
        if not records:
            return []
        stored = self.stored_stream()
        adopted = []
        for record in records:
            if _whole(record, stored, found, self):
                self.adopted[record.part] = record
                adopted.append(record.part)
            else:
                self.log.event("part_record_incomplete", "warning", part=record.part)
                key = self.key(record.part, "json")
                self.refused.add((key, found.get(key, 0)))
        return adopted

    def stored_stream(self) -> dict[str, int]:
        """What is in the video's `streaming/` folder now: key -> bytes."""
        return _sizes(self.storage, self.bucket, self.media_prefix + "streaming/")

    def stream_keys(self) -> set[str]:
        """The keys of the segments adopted parts uploaded (kept at the end)."""
        prefix = self.media_prefix + "streaming/"
        return {
            prefix + uri
            for record in self.adopted.values()
            for segments in record.segments.values()
            for uri, _, _ in segments
        }

    def keys(self) -> tuple[str, ...]:
        """Every key of the parts this attempt adopted or recorded."""
        parts = set(self.adopted) | self.recorded
        records = [self.key(k, suffix) for k in sorted(parts) for suffix in ("json", "tar")]
        return (*sorted(self.stream_keys()), *records, *sorted(self.shared))

    def add(self, record: PartRecord, keys: list[str], archive: Path) -> None:
        self.finished[record.part] = record
        self.pending.append(_Pending(record, keys, archive))

    def write_landed(self, landed: Any) -> None:
        """Write the records whose segments have all landed (`landed(keys)`)."""
        still = []
        for item in self.pending:
            if not landed(item.keys):
                still.append(item)
                continue
            self._write(item)
        self.pending = still

    def write_when_landed(self, landed: Any, seconds: float) -> None:
        """Wait (at most `seconds`) for the pending parts' segments, writing
        each record as they land: a stopping worker records what it finished."""
        deadline = time.monotonic() + seconds
        while self.pending and time.monotonic() < deadline:
            self.write_landed(landed)
            time.sleep(0.1)
        self.write_landed(landed)
        if self.pending:
            self.log.event(
                "parts_not_recorded", "info", parts=[p.record.part for p in self.pending]
            )

    def _write(self, item: _Pending) -> None:
        k = item.record.part
        try:
            self.storage.put_small(
                self.bucket, self.key(k, "tar"), item.archive.read_bytes(), "application/x-tar"
            )
            self.storage.put_small(
                self.bucket, self.key(k, "json"), item.record.to_json(), "application/json"
            )
        except StorageUnavailable as exc:  # a checkpoint is a saving, not the job
            self.log.event("part_record_failed", "warning", part=k, error=str(exc)[:200])
            return
        self.recorded.add(k)
        self.log.event("part_recorded", part=k)

    def clear(self) -> None:
        """Remove every record (the stream is complete, or the plan changed)."""
        try:
            for page in self.storage.list_objects(self.bucket, self.folder):
                self.storage.delete_objects(self.bucket, [StoredObject(o.key) for o in page])
        except StorageUnavailable as exc:
            self.log.event("part_records_not_removed", "warning", error=str(exc)[:200])


def part_key(media_prefix: str, k: int, suffix: str) -> str:
    """Part k's record (`json`), archive (`tar`), audio slice (`nut`) or failure mark."""
    return f"{media_prefix}{FOLDER}part_{k:05d}.{suffix}"


def read_shared(
    storage: Storage, bucket: str, media_prefix: str, log: EventLog
) -> SharedParts | None:
    """What an owner of the job published (None: nothing, or unreadable)."""
    try:
        data = storage.read_small(bucket, media_prefix + FOLDER + SHARED, MAX_SHARED_BYTES)
        return SharedParts.from_json(data)
    except ObjectMissing:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        log.event("shared_parts_ignored", "warning", error=str(exc)[:200])
        return None


def _sizes(storage: Storage, bucket: str, prefix: str) -> dict[str, int]:
    return {
        o.key: o.size or 0 for page in storage.list_objects(bucket, prefix) for o in page
    }  # fmt: skip


def open_book(
    storage: Storage, bucket: str, media_prefix: str, plan: PartPlan, renditions: list[str],
    log: EventLog,
) -> PartBook:  # fmt: skip
    """The book for this attempt: the parts earlier attempts (or other
    workers) recorded for the same plan and that are whole in storage are
    adopted; if the folder belongs to another plan, it is cleared and the
    plan starts over."""
    book = PartBook(storage, bucket, media_prefix, plan, log)
    found = _sizes(storage, bucket, book.folder)
    records = [
        record
        for key in sorted(found)
        if _RECORD.fullmatch(key[len(book.folder) :])
        and (record := book.read_record(key, renditions)) is not None
    ]
    shared = book.read_shared() if book.shared_key in found else None
    other = [r for r in records if r.fingerprint != plan.fingerprint]
    if other or (shared is not None and shared.fingerprint != plan.fingerprint):
        book.clear()
        return book
    book._adopt(records, found)
    return book


def _whole(
    record: PartRecord, stored: dict[str, int], found: dict[str, int], book: PartBook
) -> bool:
    """Every segment of the part in `streaming/` with its recorded size, and its tar."""
    prefix = book.media_prefix + "streaming/"
    segments = all(
        stored.get(prefix + uri) == size
        for segments in record.segments.values()
        for uri, _, size in segments
    )
    return segments and found.get(book.key(record.part, "tar")) == record.archive


def make_archive(path: Path, files: list[Path]) -> int:
    """A part's tiles (and poster) in one tar; returns its size."""
    with tarfile.open(path, "w") as tar:
        for file in files:
            tar.add(file, arcname=file.name)
    return path.stat().st_size


def restore_archive(book: PartBook, k: int, tiles: Path, poster: Path) -> None:
    """Unpack an adopted part's tiles, and its poster as `poster` (only
    regular files with the names we give them; nothing else in the tar is
    touched)."""
    data = book.storage.read_small(book.bucket, book.key(k, "tar"), MAX_ARCHIVE_BYTES)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if not (member.isfile() and _MEMBER.fullmatch(member.name)):
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            target = tiles / member.name if member.name.startswith("tile_") else poster
            target.write_bytes(source.read())
