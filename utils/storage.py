"""All Wasabi (S3-compatible) calls of both workers.

Transfers go through s3transfer's TransferManager (concurrent ranged GETs for
big downloads, parallel PUTs and multipart for uploads); request retries are
botocore's `standard` mode. The rest of the code speaks of files and folders:
errors come out as `ObjectMissing` (permanent) or `StorageUnavailable`
(transient, worth retrying later).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer import exceptions as s3transfer_errors
from s3transfer.exceptions import RetriesExceededError, S3UploadFailedError
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from utils.config import CommonSettings

MiB = 1024 * 1024
Check = Callable[[], None]


class StorageUnavailable(Exception):
    """Storage failed in a way that may pass: network, 5xx, throttling."""


class StorageDenied(StorageUnavailable):
    """The store refused our credentials or rights (AccessDenied, a bad key):
    it will not pass on its own, an operator has to act."""


class ObjectMissing(Exception):
    """The object does not exist (or is not readable as one)."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str | None = None
    size: int | None = None  # from a listing of current objects

    def request(self) -> dict[str, str]:
        entry = {"Key": self.key}
        if self.version_id:
            entry["VersionId"] = self.version_id
        return entry


@dataclass(frozen=True)
class ObjectStat:
    """What tells one version of an object from another (size, ETag, time)."""

    size: int
    etag: str
    modified: str  # ISO 8601, the store's clock

    def identity(self) -> dict[str, object]:
        return {"size": self.size, "etag": self.etag, "modified": self.modified}


@dataclass(frozen=True)
class Upload:
    path: Path
    key: str
    content_type: str
    cache_control: str


class _Progress(BaseSubscriber):
    def __init__(self, on_bytes: Callable[[int], None] | None) -> None:
        self.on_bytes = on_bytes

    def on_progress(self, future: object, bytes_transferred: int, **kwargs: object) -> None:
        if self.on_bytes is not None:
            self.on_bytes(bytes_transferred)


class _Finished(BaseSubscriber):
    """Wakes the batch's waiter the moment any transfer ends (no polling lag)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_done(self, future: object, **kwargs: object) -> None:
        self.event.set()


class _KnownSize(BaseSubscriber):
    """Tells s3transfer the size we already know (saves its HeadObject)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def on_queued(self, future: object, **kwargs: object) -> None:
        future.meta.provide_transfer_size(self.size)  # type: ignore[attr-defined]


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket") or status == 404


_DENIED = (
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "AllAccessDisabled",
)


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ClientError) and _is_missing(exc):
        return ObjectMissing(what)
    if isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code")) in _DENIED:
        return StorageDenied(f"{what}: access denied: {str(exc)[:300]}")
    return StorageUnavailable(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


# (S3DownloadFailedError came with s3transfer 0.10; the floor's 0.9 has none.)
_TRANSFER_ERRORS: tuple[type[BaseException], ...] = (
    ClientError, BotoCoreError, OSError, RetriesExceededError, S3UploadFailedError,
    *filter(None, [getattr(s3transfer_errors, "S3DownloadFailedError", None)]),
)  # fmt: skip


class TransferBatch:
    """Transfers through one s3transfer TransferManager (concurrent parts and
    files). Errors come out as StorageUnavailable / ObjectMissing."""

    def __init__(self, storage: Storage, what: str, on_bytes: Callable[[int], None] | None) -> None:
        self.manager = TransferManager(storage.client, storage.transfer_config)
        self.what = what
        self.poll_seconds = storage.poll_seconds
        self.finished = threading.Event()
        self.subscribers = [_Progress(on_bytes), _Finished(self.finished)]
        self.futures: list = []

    def __enter__(self) -> TransferBatch:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        self.close(cancel=kind is not None)

    def download_into(self, bucket: str, key: str, target: object, size: int) -> None:
        """Download into a seekable file object: s3transfer seeks to each
        part's offset and writes its chunks as they arrive."""
        self.futures.append(
            self.manager.download(
                bucket, key, target, subscribers=[*self.subscribers, _KnownSize(size)]
            )
        )

    def upload(self, bucket: str, item: Upload) -> Any:
        extra = {"ContentType": item.content_type, "CacheControl": item.cache_control}
        future = self.manager.upload(
            str(item.path), bucket, item.key, extra_args=extra, subscribers=self.subscribers
        )
        self.futures.append(future)
        return future

    def raise_failures(self) -> None:
        """Raise the first failure among the transfers that have finished."""
        for future in self.futures:
            if future.done():
                try:
                    future.result()
                except _TRANSFER_ERRORS as exc:
                    raise _translate(exc, self.what) from exc

    def wait(self, check: Check = lambda: None) -> None:
        """Wait for every transfer, calling `check()` between waits; whatever
        it raises cancels the rest and propagates (how a job stops mid-transfer)."""
        while True:
            self.finished.clear()  # (set again by any transfer that ends from here on)
            if all(f.done() for f in self.futures):
                break
            check()
            self.raise_failures()
            self.finished.wait(self.poll_seconds)
        self.raise_failures()

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for future in self.futures:
                future.cancel()
        self.manager.shutdown(cancel=cancel)


# Wasabi and other S3-compatible stores differ from AWS in what they accept:
# botocore 1.36+ sends every upload with a CRC32 checksum (a trailer over
# HTTPS, "aws-chunked", which Wasabi answered with "Checksum Type mismatch")
# and DeleteObjects with a CRC32 instead of the Content-MD5 such stores
# require. Checksums only where the operation requires one, and there the
# Content-MD5 every S3 store knows. (Older botocore has neither option and
# already behaves so.)
_CHECKSUM_OPTIONS = {
    name: "when_required"
    for name in ("request_checksum_calculation", "response_checksum_validation")
    if name in Config.OPTION_DEFAULTS
}


def _content_md5_for_required_checksums(params: dict, **kwargs: object) -> None:
    """`before-call` hook: an operation that must carry a checksum
    (DeleteObjects) carries Content-MD5, not botocore's CRC32 default."""
    params.setdefault("context", {})["checksum"] = {}  # (no CRC32 header or trailer)
    body = params.get("body") or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    params.setdefault("headers", {})["Content-MD5"] = base64.b64encode(digest).decode("ascii")


def s3_client(endpoint: str, region: str, key_id: str, secret: str, pool: int = 14) -> object:
    """A boto3 S3 client that speaks what Wasabi accepts (see above)."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=pool,
            s3={"addressing_style": "path"},
            **_CHECKSUM_OPTIONS,
        ),
    )
    client.meta.events.register("before-call.s3.DeleteObjects", _content_md5_for_required_checksums)
    return client


class Storage:
    def __init__(
        self,
        endpoint: str,
        region: str,
        key_id: str,
        secret: str,
        *,
        max_concurrency: int = 10,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        poll_seconds: float = 0.2,
    ) -> None:
        self.client: Any = s3_client(endpoint, region, key_id, secret, max_concurrency + 4)
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=part_size,
            max_request_concurrency=max_concurrency,
        )
        self.poll_seconds = poll_seconds

    @classmethod
    def from_settings(cls, common: CommonSettings) -> Storage:
        return cls(
            common.wasabi_endpoint, common.wasabi_region, common.wasabi_key, common.wasabi_secret
        )

    def stat(self, bucket: str, key: str) -> ObjectStat:
        """Size, ETag and modification time of one object (HEAD)."""
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, f"s3://{bucket}/{key}") from exc
        modified = head.get("LastModified")
        return ObjectStat(
            int(head["ContentLength"]),
            str(head.get("ETag") or "").strip('"'),
            modified.isoformat() if hasattr(modified, "isoformat") else str(modified or ""),
        )

    def batch(self, what: str, on_bytes: Callable[[int], None] | None = None) -> TransferBatch:
        """Concurrent transfers that run while the caller does other work."""
        return TransferBatch(self, what, on_bytes)

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes | None:
        """Bytes [start, end) of an object in one GET, or None if that fails
        (for a head start only: the caller's full download brings them too)."""
        try:
            span = f"bytes={start}-{end - 1}"
            answer = self.client.get_object(Bucket=bucket, Key=key, Range=span)
            data = answer["Body"].read()
        except _TRANSFER_ERRORS:
            return None
        return data if len(data) == end - start else None

    def read_small(self, bucket: str, key: str, limit: int) -> bytes:
        """A small object of our own whole (ObjectMissing if absent); one
        larger than `limit` is refused as ValueError, not read."""
        answer = self._call(f"read s3://{bucket}/{key}", "get_object", Bucket=bucket, Key=key)
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > limit:
                raise ValueError(f"{key} is larger than {limit} bytes")
            data = body.read(limit + 1)
        except _TRANSFER_ERRORS as exc:
            raise _translate(exc, f"read s3://{bucket}/{key}") from exc
        finally:
            body.close()
        if len(data) > limit:
            raise ValueError(f"{key} is larger than {limit} bytes")
        return data

    def put_small(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """One small object in one PutObject (a record, not a stream output)."""
        self._call(
            f"write s3://{bucket}/{key}", "put_object",
            Bucket=bucket, Key=key, Body=data, ContentType=content_type,
            CacheControl="no-store",
        )  # fmt: skip

    def upload(
        self,
        bucket: str,
        uploads: Sequence[Upload],
        *,
        check: Check = lambda: None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload files concurrently; returns when every one has landed."""
        with self.batch(f"upload {len(uploads)} files to s3://{bucket}", on_bytes) as batch:
            for item in uploads:
                batch.upload(bucket, item)
            batch.wait(check)

    def _call(self, what: str, operation: str, **kwargs: object) -> dict:
        try:
            return getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, what) from exc

    def is_versioned(self, bucket: str) -> bool:
        """True when the bucket keeps old versions (versioning on or suspended)."""
        answer = self._call(f"versioning of {bucket}", "get_bucket_versioning", Bucket=bucket)
        return answer.get("Status") in ("Enabled", "Suspended")

    def list_objects(
        self, bucket: str, prefix: str, *, versions: bool = False, page_size: int = 1000
    ) -> Iterator[list[StoredObject]]:
        """Pages (one list call each) of what lies under `prefix`.

        With `versions`, every version and delete marker, each with its
        VersionId: deleting those removes the objects for good.
        """
        kwargs: dict[str, object] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        what = f"list s3://{bucket}/{prefix}"
        while True:
            if versions:
                page = self._call(what, "list_object_versions", **kwargs)
                entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
                found = [StoredObject(e["Key"], e.get("VersionId")) for e in entries]
                more = {"KeyMarker": page.get("NextKeyMarker"),
                        "VersionIdMarker": page.get("NextVersionIdMarker")}  # fmt: skip
            else:
                page = self._call(what, "list_objects_v2", **kwargs)
                found = [
                    StoredObject(e["Key"], size=int(e.get("Size") or 0))
                    for e in page.get("Contents", [])
                ]
                more = {"ContinuationToken": page.get("NextContinuationToken")}
            if found:
                yield found
            if not page.get("IsTruncated"):
                return
            kwargs.update({k: v for k, v in more.items() if v})

    def delete_objects(self, bucket: str, objects: Sequence[StoredObject]) -> list[StoredObject]:
        """Delete up to 1000 objects in one DeleteObjects call (quiet mode).

        Returns the objects the store reported as not deleted.
        """
        if not objects:
            return []
        if len(objects) > 1000:
            raise ValueError("DeleteObjects takes at most 1000 keys")
        answer = self._call(
            f"delete {len(objects)} objects from s3://{bucket}",
            "delete_objects",
            Bucket=bucket,
            Delete={"Objects": [o.request() for o in objects], "Quiet": True},
        )
        refused: dict[str, set[str | None]] = {}
        for error in answer.get("Errors", []):
            refused.setdefault(error.get("Key", ""), set()).add(error.get("VersionId"))
        # An error without a VersionId names the key as a whole.
        return [
            o for o in objects
            if o.key in refused and (None in refused[o.key] or o.version_id in refused[o.key])
        ]  # fmt: skip
