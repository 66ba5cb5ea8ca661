"""What travels on the part queue and sits in `shared.json` is untrusted:
each hostile shape is refused with a clear error, and a part message is
never taken for a job (nor a job for a part)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from streaming.checkpoint import SharedParts
from streaming.errors import JobError
from streaming.messages import PartRequest, parse_message, parse_part_message
from streaming.services import Services
from streaming.worker import next_queue
from tests.unit.test_config import BASE
from utils.config import ConfigError, load_transcoder_settings

IDS = {k: str(uuid.uuid4()) for k in ("job_id", "media_id", "org_id")}
FP = "0123456789abcdef0123456789abcdef"


def _part(**changes: object) -> str:
    return json.dumps({"type": "transcode_part", **IDS, "part": 3, "fingerprint": FP, **changes})


def test_a_part_message_round_trips() -> None:
    request = PartRequest(IDS["job_id"], IDS["media_id"], IDS["org_id"], 3, FP)
    assert parse_part_message(request.to_body()) == request
    assert parse_part_message(_part()) == request


@pytest.mark.parametrize(
    "body",
    [
        _part(type="transcode"),  # a job, not a part
        json.dumps({**IDS, "part": 3, "fingerprint": FP}),  # no type
        _part(part=True),
        _part(part=-1),
        _part(part=100_000),
        _part(part="3"),
        _part(part=3.0),
        _part(fingerprint="0123"),
        _part(fingerprint=FP.upper()),
        _part(fingerprint="../../etc/passwd" + "0" * 16),
        _part(job_id="../other-job"),
        _part(org_id=None),
        "[" * 100_000,
        "not json",
        json.dumps([1, 2]),
        _part(pad="x" * 300_000),
    ],
)
def test_hostile_part_messages_are_refused(body: str) -> None:
    with pytest.raises(JobError) as refused:
        parse_part_message(body)
    assert refused.value.code == "INVALID_MESSAGE"


def test_a_part_message_on_the_job_queue_is_not_a_job() -> None:
    with pytest.raises(JobError) as refused:
        parse_message(_part())
    assert refused.value.code == "INVALID_MESSAGE"


def test_shared_parts_round_trip() -> None:
    shared = SharedParts(FP, 5, {1: "slice", 4: "none"})
    assert SharedParts.from_json(shared.to_json()) == shared
    with pytest.raises(ValueError):  # (an older owner's silent part is not taken)
        SharedParts.from_json(SharedParts(FP, 5, {2: "silence"}).to_json())


@pytest.mark.parametrize(
    "raw",
    [
        {"fingerprint": "x", "count": 5, "published": {}},
        {"fingerprint": FP, "count": 0, "published": {}},
        {"fingerprint": FP, "count": True, "published": {}},
        {"fingerprint": FP, "count": 5, "published": {"5": "slice"}},  # beyond the plan
        {"fingerprint": FP, "count": 5, "published": {"-1": "slice"}},
        {"fingerprint": FP, "count": 5, "published": {"1": "../slice"}},
        {"fingerprint": FP, "count": 5, "published": [1, 2]},
        [FP, 5],
    ],
)
def test_hostile_shared_records_are_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        SharedParts.from_json(json.dumps(raw).encode())


def test_the_part_queue_is_optional_and_never_the_job_queue() -> None:
    assert load_transcoder_settings(BASE).parts_queue_url is None
    parts = BASE["SQS_QUEUE_URL"].replace("jobs", "parts")
    assert load_transcoder_settings({**BASE, "SQS_CHUNK_QUEUE_URL": parts}).parts_queue_url == parts
    for bad in (BASE["SQS_QUEUE_URL"], BASE["SQS_QUEUE_URL"] + "/", "sqs://parts"):
        with pytest.raises(ConfigError, match="SQS_CHUNK_QUEUE_URL"):
            load_transcoder_settings({**BASE, "SQS_CHUNK_QUEUE_URL": bad})
    with pytest.raises(ConfigError, match="SQS_WAIT_SECONDS"):
        load_transcoder_settings({**BASE, "SQS_WAIT_SECONDS": "21"})


def test_an_idle_worker_polls_one_queue_at_a_time_parts_first() -> None:
    """Idle, it long-polls the two queues in turn (as many requests as one
    queue alone); after any message, the part queue comes first."""
    jobs, parts = object(), object()
    settings = load_transcoder_settings(BASE)
    alone = Services(settings, None, None, jobs, frozenset(), threading.Event())  # type: ignore[arg-type]
    assert [next_queue(alone, turn) for turn in range(3)] == [jobs, jobs, jobs]
    both = Services(settings, None, None, jobs, frozenset(), threading.Event(),  # type: ignore[arg-type]
                    parts_queue=parts)  # type: ignore[arg-type]  # fmt: skip
    assert [next_queue(both, turn) for turn in range(4)] == [parts, jobs, parts, jobs]
