"""Claim and settle together on in-memory fakes: the transitions a message
can take, with the database's and the queue's own rules (tests/unit/fakes.py)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from streaming.claim import claim
from streaming.fate import Event, Happened, decide
from streaming.messages import parse_message
from streaming.settle import Report, Target, policy_of, settle
from tests.unit.fakes import FakeDb, FakeQueue, FakeStorage, services
from utils.observability import EventLog

JOB, ORG, MEDIA = (f"{c * 8}-{c * 4}-4{c * 3}-8{c * 3}-{c * 12}" for c in "abc")
BODY = json.dumps({"job_id": JOB, "media_id": MEDIA, "org_id": ORG, "type": "transcode"})
LOG = EventLog("transcode", environment="test", worker="unit", stream=io.StringIO())


@pytest.fixture
def world() -> tuple[FakeDb, FakeQueue, FakeStorage]:
    db, queue, storage = FakeDb(), FakeQueue(), FakeStorage()
    db.jobs[JOB] = {
        "id": JOB, "org_id": ORG, "media_asset_id": MEDIA, "type": "transcode",
        "state": "queued", "attempt": 1, "updated_at": db.now.isoformat(), "result": None,
    }  # fmt: skip
    db.assets[MEDIA] = {"id": MEDIA, "org_id": ORG, "status": "uploaded",
                        "processing_stage": "uploaded", "streaming_ready": False}  # fmt: skip
    return db, queue, storage


def received(queue: FakeQueue, times: int = 1) -> tuple[str, object]:
    message_id = queue.send(BODY)
    for _ in range(times):
        message = queue.receive_by_id(message_id)
    return message_id, message


def settle_event(svc, message, event: Event, target: Target | None, report=None) -> str:
    plan = decide(event, message.receive_count, policy_of(svc.settings))
    return settle(plan, message, target, report or Report(), svc, LOG)


def handle_unclaimed(svc, message) -> str:
    """What the worker does with a message it does not get to work on."""
    held = claim(svc, parse_message(message.body), message, policy_of(svc.settings))
    assert held.event is not None, "the job was claimed"
    return settle_event(svc, message, held.event, held.target, Report(asset=held.repair))


def test_a_claim_records_which_message_holds_the_job(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    message_id, message = received(queue)

    held = claim(svc, parse_message(BODY), message, policy_of(svc.settings))

    assert held.event is None and held.target.attempt == 2
    assert db.jobs[JOB]["result"]["lease"]["message_id"] == message_id


def test_another_message_for_a_live_lease_is_dropped_and_the_holders_stays(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    holder_id, holder = received(queue)
    claim(svc, parse_message(BODY), holder, policy_of(svc.settings))
    _, duplicate = received(queue)

    assert handle_unclaimed(svc, duplicate) == "duplicate"
    assert list(queue.messages) == [holder_id]
    assert db.jobs[JOB]["attempt"] == 2


def test_the_holders_message_back_early_is_handed_over_to_a_copy(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    holder_id, message = received(queue)
    claim(svc, parse_message(BODY), message, policy_of(svc.settings))
    leased_at = db.jobs[JOB]["updated_at"]
    db.now += timedelta(seconds=100)  # the holder died; its message comes back

    message = queue.receive_by_id(holder_id)  # receive 2, one left: a copy takes its place
    assert handle_unclaimed(svc, message) == "deferred"

    (copy_id,) = queue.messages
    assert copy_id != holder_id and queue.messages[copy_id]["delay"] == 175
    assert db.jobs[JOB]["result"]["lease"]["message_id"] == copy_id
    assert db.jobs[JOB]["updated_at"] == leased_at  # waiting never renews a dead lease


def test_a_stale_lease_is_taken_over_with_one_more_crash(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    _, first = received(queue)
    claim(svc, parse_message(BODY), first, policy_of(svc.settings))
    db.now += timedelta(seconds=300)
    second = queue.receive_by_id(queue.send(BODY))  # a duplicate, after the lease went stale

    held = claim(svc, parse_message(BODY), second, policy_of(svc.settings))

    assert held.event is None and held.target.attempt == 3
    assert db.jobs[JOB]["result"]["attempts"] == {"failed": 0, "crashed": 1}


def test_a_stop_swaps_the_message_for_a_fresh_copy(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    message_id, message = received(queue, times=3)
    db.jobs[JOB]["state"] = "running"
    db.jobs[JOB]["attempt"] = 2

    settle_event(svc, message, Event(Happened.STOPPED), Target(JOB, MEDIA, 2))

    (copy_id,) = queue.messages
    assert copy_id != message_id and queue.messages[copy_id]["count"] == 0
    assert queue.messages[copy_id]["delay"] == 0
    assert db.jobs[JOB]["state"] == "queued"


def test_a_final_write_that_does_not_land_keeps_a_message_for_after_the_lease(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    message_id, message = received(queue)
    claim(svc, parse_message(BODY), message, policy_of(svc.settings))
    db.down.add("fail_job")

    outcome = settle_event(
        svc, message, Event(Happened.FAILED, "INPUT_UNSUPPORTED", "text"), Target(JOB, MEDIA, 2)
    )

    assert outcome == "failed" and db.jobs[JOB]["state"] == "running"
    (copy_id,) = queue.messages
    assert queue.messages[copy_id]["delay"] >= svc.settings.job_stale_seconds


def test_outputs_are_removed_only_while_the_job_is_ours(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    message_id, message = received(queue)
    claim(svc, parse_message(BODY), message, policy_of(svc.settings))
    keys = (f"orgs/{ORG}/uploads/{MEDIA}/streaming/720p_00000.ts",)
    storage.keys.update(keys)
    db.jobs[JOB]["attempt"] = 3  # another worker took it over meanwhile
    report = Report(bucket="bucket", written=keys)

    outcome = settle_event(svc, message, Event(Happened.FAILED, "X"), Target(JOB, MEDIA, 2), report)

    assert outcome == "lost"
    assert storage.keys == set(keys) and message_id in queue.messages


def test_a_success_whose_asset_write_did_not_land_is_finished_by_the_next_message(world) -> None:
    db, queue, storage = world
    svc = services(db, queue, storage)
    _, message = received(queue)
    claim(svc, parse_message(BODY), message, policy_of(svc.settings))
    db.down.add("update_asset")
    ready = {"status": "ready", "processing_stage": "complete", "streaming_ready": True}

    settle_event(svc, message, Event(Happened.SUCCEEDED), Target(JOB, MEDIA, 2),
                 Report(result={}, asset=ready))  # fmt: skip
    assert db.jobs[JOB]["state"] == "succeeded" and db.assets[MEDIA]["status"] == "uploaded"
    db.down.clear()
    (copy_id,) = queue.messages

    assert handle_unclaimed(svc, queue.receive_by_id(copy_id)) == "skipped"
    assert db.assets[MEDIA]["status"] == "ready" and not queue.messages
