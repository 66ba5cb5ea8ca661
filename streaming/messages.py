"""The SQS message bodies, validated: a job (contract section 1), and a
part of a job (our own part queue, streaming/part_sharing.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from streaming.errors import JobError
from utils.media_paths import canonical_uuid

MAX_BODY_BYTES = 256 * 1024  # SQS's own limit; anything larger is not ours


@dataclass(frozen=True)
class TranscodeRequest:
    job_id: str
    media_id: str
    org_id: str


PART_TYPE = "transcode_part"


@dataclass(frozen=True)
class PartRequest:
    """Part `part` of a job, for the plan with this fingerprint."""

    job_id: str
    media_id: str
    org_id: str
    part: int
    fingerprint: str

    def to_body(self) -> str:
        return json.dumps({"type": PART_TYPE, **self.__dict__}, separators=(",", ":"))


def parse_message(body: str) -> TranscodeRequest:
    """`{"job_id", "media_id", "org_id", "type"?}` → request; JobError otherwise."""
    data = _json_object(body)
    kind = data.get("type", "transcode")
    if kind not in ("transcode", None):
        raise JobError("INVALID_MESSAGE", f"message type is {str(kind)[:40]!r}, not 'transcode'")
    return TranscodeRequest(**_ids(data))


def parse_part_message(body: str) -> PartRequest:
    """A part queue's message → request; JobError otherwise."""
    data = _json_object(body)
    if data.get("type") != PART_TYPE:
        raise JobError("INVALID_MESSAGE", f"message type is not {PART_TYPE!r}")
    part, fp = data.get("part"), data.get("fingerprint")
    if not (isinstance(part, int) and not isinstance(part, bool) and 0 <= part < 100_000):
        raise JobError("INVALID_MESSAGE", "part is not a part number")
    if not (isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{32}", fp)):
        raise JobError("INVALID_MESSAGE", "fingerprint is not a plan's")
    return PartRequest(**_ids(data), part=part, fingerprint=fp)


def _json_object(body: str) -> dict[str, Any]:
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
    return data


def _ids(data: dict[str, Any]) -> dict[str, str]:
    ids = {}
    for field in ("job_id", "media_id", "org_id"):
        if field not in data:
            raise JobError("INVALID_MESSAGE", f"message has no {field}")
        value = canonical_uuid(data[field])
        if value is None:
            raise JobError("INVALID_MESSAGE", f"{field} is not a UUID: {str(data[field])[:80]!r}")
        ids[field] = value
    return ids
