"""settle against the real stack: what a failing worker may remove."""

from __future__ import annotations

import io

from streaming.fate import Event, Happened, decide
from streaming.settle import Report, Target, policy_of, settle
from tests.support import BUCKET, World
from utils.observability import EventLog
from utils.sqs_queue import Message


def _held_message(world: World) -> Message:
    raw = world.sqs.receive_message(QueueUrl=world.queue_url)["Messages"][0]
    return Message(raw["MessageId"], raw["ReceiptHandle"], raw["Body"], 1)


def _fail(world: World, upload, message: Message, attempt: int, written: tuple[str, ...]) -> str:
    services = world.services()
    plan = decide(Event(Happened.FAILED, "INPUT_CORRUPT", "cut"), 1, policy_of(services.settings))
    log = EventLog("transcode", environment="test", worker="test", stream=io.StringIO())
    target = Target(upload.job_id, upload.media_id, attempt)
    return settle(plan, message, target, Report(BUCKET, written), services, log)


def test_a_worker_that_lost_the_job_removes_nothing_of_the_new_owners(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    message = _held_message(world)
    world.sql("UPDATE jobs SET state = 'running', attempt = 3 WHERE id = %s", upload.job_id)
    stream = [upload.prefix + "streaming/" + name for name in ("720p_00000.ts", "index.m3u8")]
    for key in stream:
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"the new owner's")

    outcome = _fail(world, upload, message, attempt=2, written=(stream[0],))

    assert outcome == "lost"
    assert sorted(world.keys(upload.prefix + "streaming/")) == sorted(stream)
    assert world.job(upload.job_id)["state"] == "running"  # the new owner's, untouched


def test_a_failing_worker_that_holds_the_job_removes_only_what_it_wrote(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    message = _held_message(world)
    world.sql("UPDATE jobs SET state = 'running', attempt = 2 WHERE id = %s", upload.job_id)
    ours = upload.prefix + "streaming/720p_00000.ts"
    legacy = upload.prefix + "streaming/presigned/index.m3u8"  # the old playback function's
    for key in (ours, legacy):
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    assert _fail(world, upload, message, attempt=2, written=(ours,)) == "failed"

    assert world.keys(upload.prefix + "streaming/") == [legacy]
    assert world.job(upload.job_id)["state"] == "failed"
    assert world.asset(upload.media_id)["status"] == "failed"
    assert world.queue_counts() == (0, 0)
