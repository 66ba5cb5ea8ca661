"""The SQS message body (contract section 1), validated."""

from __future__ import annotations

import json
from dataclasses import dataclass

from streaming.errors import JobError
from utils.media_paths import canonical_uuid

MAX_BODY_BYTES = 256 * 1024  # SQS's own limit; anything larger is not ours


@dataclass(frozen=True)
class TranscodeRequest:
    job_id: str
    media_id: str
    org_id: str


def parse_message(body: str) -> TranscodeRequest:
    """`{"job_id", "media_id", "org_id", "type"?}` → request; JobError otherwise."""
    if len(body.encode("utf-8", "replace")) > MAX_BODY_BYTES:
        raise JobError("INVALID_MESSAGE", "message body is larger than 256 KiB")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise JobError("INVALID_MESSAGE", f"message body is not JSON: {exc}") from None
    except RecursionError:  # `[[[[…` nested deeper than the parser goes
        raise JobError("INVALID_MESSAGE", "message body is nested too deeply") from None
    if not isinstance(data, dict):
        raise JobError("INVALID_MESSAGE", "message body is not a JSON object")
    kind = data.get("type", "transcode")
    if kind not in ("transcode", None):
        raise JobError("INVALID_MESSAGE", f"message type is {str(kind)[:40]!r}, not 'transcode'")
    ids = {}
    for field in ("job_id", "media_id", "org_id"):
        if field not in data:
            raise JobError("INVALID_MESSAGE", f"message has no {field}")
        value = canonical_uuid(data[field])
        if value is None:
            raise JobError("INVALID_MESSAGE", f"{field} is not a UUID: {str(data[field])[:80]!r}")
        ids[field] = value
    return TranscodeRequest(**ids)
