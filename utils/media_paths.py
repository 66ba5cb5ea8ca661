"""Where a video's objects live in storage, and which keys a worker may touch.

Everything a worker reads or writes in the bucket is under one video's folder,
`orgs/{org_id}/uploads/{media_id}/` (contract section 3). Keys and ids come
from queue messages and database rows, i.e. from outside: they are checked
here, in one place, before any storage call is made with them.
"""

from __future__ import annotations

import re
import uuid

MAX_KEY_BYTES = 1024  # S3's own limit on a key
# \Z, not $: `$` also matches before a trailing newline.
_UUID = re.compile(
    r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


class UnsafeKey(ValueError):
    """A key or id that would reach outside the video's own folder."""


def canonical_uuid(value: object) -> str | None:
    """The lower-case canonical form of a UUID string, or None if it is not one."""
    if not isinstance(value, str) or not _UUID.match(value):
        return None
    return str(uuid.UUID(value))


def org_uploads_prefix(org_id: str) -> str:
    """`orgs/{org}/uploads/` for a canonical UUID: where the web app roots videos."""
    org = canonical_uuid(org_id)
    if org is None:
        raise UnsafeKey(f"not a UUID: org_id={org_id!r}")
    return f"orgs/{org}/uploads/"


def media_prefix(org_id: str, media_id: str) -> str:
    """`orgs/{org}/uploads/{media}/` for two canonical UUIDs."""
    media = canonical_uuid(media_id)
    if media is None:
        raise UnsafeKey(f"not a UUID: media_id={media_id!r}")
    return f"{org_uploads_prefix(org_id)}{media}/"


def check_org_base(base: object, org_id: str) -> None:
    """The web app roots an asset's folder at `base_org_storage_path`; we
    write only under `orgs/{org_id}/uploads/`, so any other base is refused
    rather than followed (or silently ignored)."""
    expected = org_uploads_prefix(org_id)
    if base != expected:
        shown = repr(base)[:120] if isinstance(base, str) else type(base).__name__
        raise UnsafeKey(f"base_org_storage_path is {shown}, not {expected!r}")


def streaming_prefix(org_id: str, media_id: str) -> str:
    return media_prefix(org_id, media_id) + "streaming/"


def _check_segments(key: str) -> list[str]:
    if not key:
        raise UnsafeKey("empty key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafeKey(f"key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise UnsafeKey("key starts with '/'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key) or "\\" in key:
        raise UnsafeKey("key contains control characters or a backslash")
    segments = key.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise UnsafeKey("key has an empty, '.' or '..' segment")
    return segments


def raw_upload_key(storage_path: str, org_id: str, media_id: str) -> str:
    """Check that a raw upload's key lies in the video's `raw/` folder; return it."""
    if not isinstance(storage_path, str):
        raise UnsafeKey("storage_path is not text")
    segments = _check_segments(storage_path)
    expected = media_prefix(org_id, media_id).rstrip("/").split("/")
    if segments[:4] != expected or len(segments) < 6 or segments[4] != "raw":
        raise UnsafeKey(
            f"storage_path is not under {'/'.join(expected)}/raw/ (got {storage_path[:200]!r})"
        )
    return storage_path


def cleanup_prefix(storage_path: object, media_asset_id: object) -> str:
    """The folder to delete for a cleanup row: exactly `orgs/{org}/uploads/{media}/`.

    The media segment must equal the row's `media_asset_id`; anything else is
    refused, because a wrong prefix here deletes other users' videos.
    """
    media = canonical_uuid(media_asset_id)
    if media is None:
        raise UnsafeKey(f"media_asset_id is not a UUID: {media_asset_id!r}")
    if not isinstance(storage_path, str) or not storage_path:
        raise UnsafeKey("storage_path is empty")
    # Only the four folder segments choose what goes; the file name after them
    # may hold any character the upload had (it is never used as a key).
    segments = storage_path.split("/")
    if any(seg in ("", ".", "..") for seg in segments[:-1]):
        raise UnsafeKey("storage_path has an empty, '.' or '..' folder segment")
    _check_segments("/".join(segments[:4]))
    if len(segments) < 4 or segments[0] != "orgs" or segments[2] != "uploads":
        raise UnsafeKey(
            f"storage_path is not orgs/{{org}}/uploads/{{media}}/…: {storage_path[:200]!r}"
        )
    org = canonical_uuid(segments[1])
    if org is None or org != segments[1]:
        raise UnsafeKey(f"org segment is not a canonical UUID: {segments[1][:60]!r}")
    if segments[3] != media:
        raise UnsafeKey(f"media segment {segments[3][:60]!r} does not match media_asset_id {media}")
    return f"orgs/{org}/uploads/{media}/"
