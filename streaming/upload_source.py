"""Where a job's upload is: the asset row's bucket and key, checked before
any storage call is made with them (the row comes from outside)."""

from __future__ import annotations

from typing import Any

from streaming.errors import JobError
from streaming.messages import PartRequest, TranscodeRequest
from utils.media_paths import UnsafeKey, canonical_uuid, check_org_base, raw_upload_key


def upload_location(
    asset: dict[str, Any] | None,
    request: TranscodeRequest | PartRequest,
    allowed_bucket: str | None,
) -> tuple[str, str]:
    """(bucket, key) of the raw upload, refused unless it is inside the
    video's own folder under the org's base, in BUCKET_NAME."""
    if asset is None:
        raise JobError("ASSET_NOT_FOUND", "no media_assets row for the job's media_id")
    if canonical_uuid(asset.get("org_id")) != request.org_id:
        raise JobError("JOB_MISMATCH", "the media asset belongs to another organisation")
    try:
        check_org_base(asset.get("base_org_storage_path"), request.org_id)
    except UnsafeKey as exc:
        raise JobError("STORAGE_BASE_INVALID", str(exc)) from None
    try:
        key = raw_upload_key(asset.get("storage_path"), request.org_id, request.media_id)
    except UnsafeKey as exc:
        raise JobError("INPUT_INVALID_KEY", str(exc)) from None
    bucket = asset.get("bucket") or allowed_bucket
    if not bucket or (allowed_bucket and bucket != allowed_bucket):
        raise JobError("INPUT_INVALID_KEY", f"bucket {str(bucket)[:64]!r} is not BUCKET_NAME")
    return str(bucket), key
