"""Every failure class of the transcoding issue, against the real stack.

Each test checks what the web app and the queue show afterwards: the job's
and asset's states and codes, whether the message is gone, hidden for a
back-off, or visible again, and that the work dir is empty.
"""

from __future__ import annotations

import json
import uuid

import pytest

from devstack.stack import free_port
from tests.support import World, by_type


@pytest.mark.parametrize(
    "body, code",
    [
        ("this is not json", "INVALID_MESSAGE"),
        (json.dumps(["a", "list"]), "INVALID_MESSAGE"),
        (json.dumps({"job_id": str(uuid.uuid4()), "org_id": str(uuid.uuid4())}), "INVALID_MESSAGE"),
        (
            json.dumps(
                {
                    "job_id": "1; DROP TABLE jobs",
                    "media_id": str(uuid.uuid4()),
                    "org_id": str(uuid.uuid4()),
                }
            ),
            "INVALID_MESSAGE",
        ),  # fmt: skip
        (
            json.dumps(
                {
                    "job_id": str(uuid.uuid4()),
                    "media_id": str(uuid.uuid4()),
                    "org_id": str(uuid.uuid4()),
                }
            ),
            "JOB_NOT_FOUND",
        ),  # fmt: skip
    ],
)
def test_bad_message_is_rejected_once_and_deleted(world: World, body: str, code: str) -> None:
    world.send(body)

    log = world.run_once()

    rejected = by_type(log, "message_rejected")
    assert len(rejected) == 1 and rejected[0]["error_code"] == code
    assert rejected[0]["severity"] == "error"
    assert world.queue_counts() == (0, 0)  # never retried
    assert world.sql("SELECT count(*) AS n FROM jobs")[0]["n"] == 0


@pytest.mark.parametrize("wrong", ["org_id", "media_id"])
def test_message_whose_ids_do_not_match_the_job_leaves_the_job_alone(
    world: World, media, wrong: str
) -> None:
    upload = world.upload(media.h264(320, 180, 2), send=False)
    world.send(upload.message(**{wrong: str(uuid.uuid4())}))

    log = world.run_once()

    assert by_type(log, "message_rejected")[0]["error_code"] == "JOB_MISMATCH"
    assert world.job(upload.job_id)["state"] == "queued"
    assert world.job(upload.job_id)["attempt"] == 1
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.queue_counts() == (0, 0)


@pytest.mark.parametrize("state", ["succeeded", "canceled"])
def test_finished_job_is_skipped_and_its_message_deleted(world: World, media, state: str) -> None:
    upload = world.upload(media.h264(320, 180, 2), state=state)

    log = world.run_once()

    assert by_type(log, "job_settled")[0]["outcome"] == "skipped"
    assert world.job(upload.job_id)["state"] == state
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.queue_counts() == (0, 0)


def test_duplicate_message_while_another_worker_holds_the_job_is_deferred(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 2), state="running", attempt=2)

    log = world.run_once()

    deferred = by_type(log, "job_deferred")
    assert len(deferred) == 1 and 5 <= deferred[0]["defer_seconds"] <= 276
    job = world.job(upload.job_id)
    assert job["state"] == "running" and job["attempt"] == 2  # the holder keeps it
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.queue_counts() == (0, 1)  # hidden until the holder's lease would be stale


def test_job_left_running_by_a_dead_worker_is_taken_over(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 3), state="running", attempt=2)
    world.backdate(upload.job_id, hours=2)

    world.run_once()

    job = world.job(upload.job_id)
    assert job["state"] == "succeeded" and job["attempt"] == 3
    assert world.asset(upload.media_id)["status"] == "ready"
    assert world.queue_counts() == (0, 0)


@pytest.mark.parametrize(
    "clip_name, code",
    [
        ("garbage", "INPUT_UNSUPPORTED"),
        ("text", "INPUT_UNSUPPORTED"),
        ("playlist", "INPUT_UNSUPPORTED"),
        ("truncated", "INPUT_CORRUPT"),
    ],
)
def test_bad_upload_fails_the_job_for_good(world: World, media, clip_name: str, code: str) -> None:
    upload = world.upload(getattr(media, clip_name)())

    log = world.run_once()

    job = world.job(upload.job_id)
    assert job["state"] == "failed" and job["error_code"] == code
    assert job["error_message"] and job["finished_at"] is not None
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"]) == ("failed", "failed")
    assert asset["streaming_ready"] is False
    failed = by_type(log, "job_failed")
    assert failed[0]["severity"] == "error" and failed[0]["error_code"] == code
    assert world.queue_counts() == (0, 0)
    assert world.keys(upload.prefix + "streaming/") == []  # nothing left behind
    assert world.work_dir_empty()


def test_upload_cut_short_fails_in_parts_too_and_leaves_nothing(world: World, media) -> None:
    """10 s stated, 3 s of data, 6-s parts: the second part finds no video."""
    upload = world.upload(media.truncated())

    world.run_once(TRANSCODE_PART_SECONDS="6")

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_CORRUPT")
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.keys(upload.prefix + "transcode-parts/") == []
    assert world.work_dir_empty()


def test_playlist_upload_is_never_followed(world: World, media) -> None:
    upload = world.upload(media.playlist())

    world.run_once()

    message = world.job(upload.job_id)["error_message"]
    assert "whitelist" in message.lower() or "not a readable video" in message


def test_missing_upload_fails_with_input_not_found(world: World) -> None:
    upload = world.upload(None)

    world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_NOT_FOUND")
    assert world.asset(upload.media_id)["processing_stage"] == "failed"


@pytest.mark.parametrize(
    "path",
    [
        "orgs/{other}/uploads/{media}/raw/match.mp4",
        "orgs/{org}/uploads/{media}/raw/../../{other_media}/raw/match.mp4",
        "/orgs/{org}/uploads/{media}/raw/match.mp4",
        "orgs/{org}/uploads/{media}/match.mp4",
        "orgs/{org}/uploads/{other_media}/raw/match.mp4",
    ],
)
def test_storage_path_outside_the_videos_folder_is_refused(world: World, media, path: str) -> None:
    org, other, other_media = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    clip = media.h264(320, 180, 2)
    # The object really exists where the row points: only the check stops it.
    upload = world.upload(clip, org_id=org, send=False)
    key = path.format(org=org, other=other, media=upload.media_id, other_media=other_media)
    world.s3.upload_file(str(clip), "rugbycodex-media", key.lstrip("/"))
    world.sql("UPDATE media_assets SET storage_path = %s WHERE id = %s", key, upload.media_id)
    world.send(upload.message())

    world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_INVALID_KEY")
    assert world.keys(upload.prefix + "streaming/") == []


def test_other_bucket_is_refused(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2), bucket="someone-elses-bucket")

    world.run_once()

    assert world.job(upload.job_id)["error_code"] == "INPUT_INVALID_KEY"


def test_database_down_at_claim_releases_the_message_with_backoff(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    world.stack.gateway.fail_next(20, 503)

    log = world.run_once()

    world.stack.gateway.clear_faults()
    retry = by_type(log, "job_retry")
    assert retry[0]["error_code"] == "DATABASE_UNAVAILABLE" and retry[0]["retry_in_seconds"] == 30
    assert world.job(upload.job_id)["state"] == "queued"
    assert world.queue_counts() == (0, 1)


def test_storage_down_hands_the_job_back_then_fails_it_on_the_last_receive(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    dead = f"http://127.0.0.1:{free_port()}"

    log = world.run_once(WASABI_ENDPOINT=dead)

    assert by_type(log, "job_retry")[0]["error_code"] == "STORAGE_UNAVAILABLE"
    job = world.job(upload.job_id)
    assert job["state"] == "queued" and job["attempt"] == 2 and job["error_code"] is None
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"]) == ("uploaded", "uploaded")
    assert world.queue_counts() == (0, 1)  # hidden for the back-off


def test_transient_failure_on_the_last_allowed_attempt_fails_the_job_for_good(
    world: World, media
) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    dead = f"http://127.0.0.1:{free_port()}"
    world.run_once(WASABI_ENDPOINT=dead, RETRY_BACKOFF_SECONDS="0")  # attempt 1: retry at once

    log = world.run_once(WASABI_ENDPOINT=dead, MAX_JOB_ATTEMPTS="2")  # attempt 2: the last

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "STORAGE_UNAVAILABLE")
    assert "gave up after 2 failed attempts" in job["error_message"]
    assert world.asset(upload.media_id)["status"] == "failed"
    assert by_type(log, "job_failed")[0]["severity"] == "error"
    assert world.queue_counts() == (0, 0)  # not silently left to the DLQ


def test_too_little_disk_releases_the_message(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))

    log = world.run_once(DISK_RESERVE_MB=str(10**9))

    assert by_type(log, "job_retry")[0]["error_code"] == "DISK_TOO_SMALL"
    assert world.job(upload.job_id)["state"] == "queued"
    assert world.queue_counts() == (0, 1)
    assert world.work_dir_empty()


def test_failing_hardware_decoder_falls_back_to_software(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    # A decoder FFmpeg does not have fails the way a broken NVDEC does.
    services = world.services(decoders=frozenset({"h264_nvv4l2dec"}))

    log = world.run_once(services)

    assert by_type(log, "hw_decode_failed")[0]["decoder"] == "h264_nvv4l2dec"
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded"
    assert job["result"]["decoder"] == "software" and job["result"]["ffmpeg_runs"] == 2


def test_short_database_outage_at_the_end_does_not_waste_the_transcode(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 3))
    world.stack.gateway.fail_matching("PATCH", '"complete"', count=2)

    log = world.run_once()

    assert len(by_type(log, "final_write_retry")) == 2
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded" and job["result"]["ffmpeg_runs"] == 1
    assert world.asset(upload.media_id)["status"] == "ready"
    assert world.queue_counts() == (0, 0)
