"""The worker's record in `jobs.result`, read from untrusted rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from streaming.errors import JobError
from streaming.job_record import Attempts, asset_repair, lease_record, read_job
from streaming.messages import parse_message
from utils.media_paths import canonical_uuid
from utils.states import JobState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
ID = "2b1f6f0e-8d3c-4c55-9a57-3f1d2b7f9a10"


def row(**fields: object) -> dict:
    base = {
        "id": ID, "org_id": ID, "media_asset_id": ID, "type": "transcode", "state": "running",
        "attempt": 2, "updated_at": (NOW - timedelta(seconds=42)).isoformat(), "result": None,
    }  # fmt: skip
    return {**base, **fields}


def test_a_claim_record_reads_back() -> None:
    record = lease_record("m-1", "jetson-01", Attempts(failed=1, crashed=2))
    view = read_job(row(result=record), NOW)
    assert view.holder == "m-1" and view.attempts == Attempts(1, 2)
    assert view.state is JobState.RUNNING and view.lease_age == pytest.approx(42)


@pytest.mark.parametrize(
    "result",
    [None, [], "text", {"lease": "x"}, {"lease": {"message_id": 7}},
     {"attempts": {"failed": -1, "crashed": "2"}}, {"attempts": {"failed": True}}],
)  # fmt: skip
def test_a_malformed_record_reads_as_none(result: object) -> None:
    view = read_job(row(result=result), NOW)
    assert view.holder is None and view.attempts == Attempts()


def test_an_unreadable_lease_time_reads_as_long_ago() -> None:
    assert read_job(row(updated_at="yesterday"), NOW).lease_age == float("inf")


def test_a_state_this_worker_does_not_know_reads_as_none() -> None:
    assert read_job(row(state="paused"), NOW).state is None


READY = {"status": "ready", "processing_stage": "complete", "streaming_ready": True}


@pytest.mark.parametrize(
    "state, result, asset, repaired",
    [
        ("succeeded", {"asset": {**READY, "thumbnail_path": "p"}}, READY, None),
        ("succeeded", {"asset": {**READY, "thumbnail_path": "p", "org_id": "x"}},
         {"status": "processing", "processing_stage": "transcoding", "streaming_ready": False},
         {**READY, "thumbnail_path": "p"}),
        ("succeeded", {}, {"status": "uploaded"}, None),  # not our record: left alone
        ("failed", {}, {"status": "ready", "processing_stage": "complete",
                        "streaming_ready": True},
         {"status": "failed", "processing_stage": "failed", "streaming_ready": False}),
        ("canceled", {}, {"status": "uploaded"}, None),
    ],
)  # fmt: skip
def test_asset_repair(state: str, result: dict, asset: dict, repaired: dict | None) -> None:
    assert asset_repair(read_job(row(state=state, result=result), NOW), asset) == repaired


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, "{" * 100_000, '{"a":' * 50_000],
)
def test_a_deeply_nested_body_is_an_invalid_message(body: str) -> None:
    with pytest.raises(JobError) as caught:
        parse_message(body)
    assert caught.value.code == "INVALID_MESSAGE"


def test_a_uuid_with_a_trailing_newline_is_not_a_uuid() -> None:
    assert canonical_uuid(ID + "\n") is None
    with pytest.raises(JobError) as caught:
        parse_message(f'{{"job_id": "{ID}\\n", "media_id": "{ID}", "org_id": "{ID}"}}')
    assert caught.value.code == "INVALID_MESSAGE"
