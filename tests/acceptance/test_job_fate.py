"""No match is ever lost: each way a job could be lost or mis-recorded, tried
against the real stack at production timing scaled to 1/30 (heartbeat 8 s,
extension 10 s, stale after 9 s, redrive after 3 receives).

These run the real daemon as a subprocess (or its real loop in-process) and
check the world afterwards: the job's and asset's rows, the queue and the
dead-letter queue, the bucket.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from devstack.fault_proxy import FaultProxy
from tests.support import (
    HEARTBEAT_SECONDS,
    World,
    by_type,
    events,
    scaled,
    start_worker,
    stop_all,
    wait_for,
    wait_for_event,
)

pytestmark = pytest.mark.slow


def nothing_left_anywhere(world: World) -> bool:
    return world.queue_counts() == (0, 0) and world.queue_counts(world.dlq_url) == (0, 0)


def finish_with(world: World, upload, **env: str) -> list[dict]:
    """A fresh worker runs until the job succeeded and no message is left."""
    proc = start_worker(world, **{**scaled(world), **env})
    try:
        wait_for(lambda: world.job(upload.job_id)["state"] == "succeeded", what="success")
        wait_for(lambda: nothing_left_anywhere(world), timeout=60, what="no message left")
    finally:
        out = stop_all([proc])[0]
    return events(out)


def sigterm_mid_transcode(world: World, **env: str) -> None:
    proc = start_worker(world, **{**scaled(world), "TRANSCODE_PRESET": "slower", **env})
    try:
        wait_for_event(proc, "transcode_ffmpeg_started")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()


def test_restart_then_power_cut_late_in_a_visibility_period_loses_nothing(
    world: World, media
) -> None:
    """Receive 1 ends in a deploy restart, receive 2 in a power cut just
    before the next heartbeat: the message comes back while the dead
    worker's lease still looks fresh. It waits for the lease, then the job
    is taken over and finished; never dropped as a duplicate."""
    upload = world.upload(media.h264(1280, 720, 30))
    sigterm_mid_transcode(world)
    assert world.queue_counts() == (1, 0)  # a fresh copy, visible at once
    second = start_worker(world, **{**scaled(world), "TRANSCODE_PRESET": "slower"})
    try:
        wait_for_event(second, "transcode_heartbeat_extended")
        time.sleep(HEARTBEAT_SECONDS * 0.85)  # late in the visibility period
        second.send_signal(signal.SIGKILL)
        second.communicate(timeout=30)
    finally:
        second.kill()

    log = finish_with(world, upload)

    kinds = [e["event_type"] for e in log]
    assert "transcode_duplicate_dropped" not in kinds
    assert "transcode_job_deferred" in kinds  # the holder's own message, waiting for the lease
    job = world.job(upload.job_id)
    assert job["result"]["attempts"] == {"failed": 0, "crashed": 1}
    assert world.asset(upload.media_id)["streaming_ready"] is True


def test_holders_message_back_on_its_last_receive_is_swapped_for_a_copy(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    for _ in range(2):  # two receives already spent (two workers died holding it)
        got = world.sqs.receive_message(
            QueueUrl=world.queue_url, MessageSystemAttributeNames=["All"]
        )["Messages"][0]
        world.sqs.change_message_visibility(
            QueueUrl=world.queue_url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=0
        )
    record = {"lease": {"message_id": got["MessageId"], "worker": "dead"}, "attempts": {}}
    world.sql(
        "UPDATE jobs SET state = 'running', attempt = 2, updated_at = now(), result = %s"
        " WHERE id = %s",
        json.dumps(record), upload.job_id,
    )  # fmt: skip
    leased_at = world.job(upload.job_id)["updated_at"]

    log = world.run_once(**scaled(world))  # receive 3, the last, while the lease looks fresh

    deferred = by_type(log, "job_deferred")
    assert deferred and deferred[0]["sqs"] == "resend"
    job = world.job(upload.job_id)
    assert job["state"] == "running" and job["updated_at"] == leased_at  # the lease untouched
    assert job["result"]["lease"]["message_id"] != got["MessageId"]  # the copy holds it now
    assert world.queue_counts() == (0, 1) and world.queue_counts(world.dlq_url) == (0, 0)
    wait_for(lambda: world.queue_counts() == (1, 0), timeout=30, what="the copy")

    world.run_once(**scaled(world))

    job = world.job(upload.job_id)
    assert (job["state"], job["result"]["attempts"]["crashed"]) == ("succeeded", 1)
    assert nothing_left_anywhere(world)


def test_deploy_restarts_never_bring_a_job_closer_to_the_dead_letter_queue(
    world: World, media
) -> None:
    upload = world.upload(media.h264(1280, 720, 12))
    for _ in range(4):  # more restarts than the queue allows receives
        sigterm_mid_transcode(world)
        assert world.queue_counts(world.dlq_url) == (0, 0)

    finish_with(world, upload)

    job = world.job(upload.job_id)
    assert job["attempt"] == 6  # five claims, one success
    assert job["result"]["attempts"] == {"failed": 0, "crashed": 0}


def test_a_failure_whose_write_does_not_land_is_recorded_by_the_next_worker(
    world: World, tmp_path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 100)
    upload = world.upload(text)
    world.stack.gateway.fail_matching("PATCH", "INPUT_UNSUPPORTED", count=10_000, table="jobs")

    log = world.run_once(**scaled(world))

    failed = by_type(log, "job_failed")
    assert failed and failed[0]["write_landed"] is False and failed[0]["sqs"] == "resend"
    assert world.job(upload.job_id)["state"] == "running"  # not recorded, so not deleted
    assert world.queue_counts() == (0, 1)
    world.stack.gateway.clear_faults()
    wait_for(lambda: world.queue_counts() == (1, 0), timeout=30, what="the copy")

    world.run_once(**scaled(world))

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_UNSUPPORTED")
    assert world.asset(upload.media_id)["status"] == "failed"
    assert nothing_left_anywhere(world)


def test_lease_times_come_from_the_database_clock_not_the_workers(world: World, media) -> None:
    """Every time the worker writes to a job goes over the wire as PostgreSQL's
    `now()`: a worker whose clock is wrong cannot make a live lease look
    stale (or a dead one fresh). Checked on what the gateway received."""
    upload = world.upload(media.h264(320, 180, 3))
    before = len(world.stack.gateway.writes)

    world.run_once(**scaled(world))

    sent = [json.loads(body) for method, path, body in world.stack.gateway.writes[before:]
            if method == "PATCH" and path.endswith("/jobs")]  # fmt: skip
    times = [(key, row[key]) for row in sent for key in row if key.endswith("_at")]
    assert {key for key, _ in times} >= {"updated_at", "started_at", "finished_at"}
    assert all(value in ("now()", None) for _, value in times), times
    assert all(row.get("updated_at") == "now()" for row in sent if "progress" in row)
    ages = world.sql(
        "SELECT extract(epoch FROM now() - updated_at) AS lease,"
        " extract(epoch FROM now() - started_at) AS started FROM jobs WHERE id = %s",
        upload.job_id,
    )[0]
    assert 0 <= float(ages["lease"]) < 30 and 0 <= float(ages["started"]) < 60


def test_a_transient_failure_turned_final_removes_its_partial_outputs(world: World, media) -> None:
    upload = world.upload(media.h264(640, 360, 12))
    world.sql(
        "UPDATE jobs SET result = %s WHERE id = %s",
        json.dumps({"attempts": {"failed": 2, "crashed": 0}}), upload.job_id,
    )  # fmt: skip
    proxy = FaultProxy(world.stack.moto.port)  # the master playlist never goes up
    proxy.add("status", count=10_000, method="PUT", path_contains="index.m3u8", status=503)
    try:
        log = world.run_once(**scaled(world), WASABI_ENDPOINT=proxy.url)
    finally:
        proxy.close()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "STORAGE_UNAVAILABLE")
    assert "gave up after 3 failed attempts" in job["error_message"]
    assert by_type(log, "partial_outputs_removed")[0]["removed"] > 0
    assert world.keys(upload.prefix + "streaming/") == []
    assert nothing_left_anywhere(world)


def test_the_asset_is_never_ready_unless_its_job_succeeded(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    gateway = world.stack.gateway
    gateway.fail_matching("PATCH", "thumbnail_vtt_path", count=10_000, table="media_assets")

    log = world.run_once(**scaled(world))  # the job's half of the pair lands, the asset's does not

    assert by_type(log, "job_settled")[0]["write_landed"] is False
    assert world.job(upload.job_id)["state"] == "succeeded"
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["streaming_ready"]) == ("processing", False)
    gateway.clear_faults()
    wait_for(lambda: world.queue_counts() == (1, 0), timeout=30, what="the copy")

    log = world.run_once(**scaled(world))  # the copy finds the job done and finishes the pair

    assert by_type(log, "job_settled")[0]["outcome"] == "skipped"
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"], asset["streaming_ready"]) == (
        "ready", "complete", True,
    )  # fmt: skip
    assert not by_type(log, "ffmpeg_started") and nothing_left_anywhere(world)


def test_a_job_handed_back_leaves_its_asset_not_ready(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    world.sql("UPDATE media_assets SET streaming_ready = true WHERE id = %s", upload.media_id)

    world.run_once(
        **scaled(world), WASABI_ENDPOINT="http://127.0.0.1:9"
    )  # storage down: retry later

    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"], asset["streaming_ready"]) == (
        "uploaded", "uploaded", False,
    )  # fmt: skip
    assert world.job(upload.job_id)["state"] == "queued"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        json.dumps({"job_id": "2b1f6f0e-8d3c-4c55-9a57-3f1d2b7f9a10\n",
                    "media_id": "2b1f6f0e-8d3c-4c55-9a57-3f1d2b7f9a10",
                    "org_id": "2b1f6f0e-8d3c-4c55-9a57-3f1d2b7f9a10"}),
    ],
    ids=["deeply_nested", "uuid_with_a_trailing_newline"],
)  # fmt: skip
def test_no_message_ends_the_daemon(world: World, body: str) -> None:
    world.send(body)

    done = world.run_worker(**scaled(world))

    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    rejected = by_type(events(done.stdout), "message_rejected")
    assert rejected and rejected[0]["error_code"] == "INVALID_MESSAGE"
    assert nothing_left_anywhere(world)
