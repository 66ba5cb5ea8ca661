"""Re-sent failed jobs: the web app sends the same job again, left `failed`,
when a user retries an upload (CONTRACT.md section 1)."""

from __future__ import annotations

import json

from tests.support import BUCKET, World, by_type


def test_a_replaced_upload_gets_its_stream_and_the_same_bad_one_does_not(
    world: World, media
) -> None:
    upload = world.upload(media.text())
    world.run_once()
    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_UNSUPPORTED")
    assert job["result"]["upload"]["size"] > 0 and job["result"]["gave_up"] is False

    world.send(upload.message())  # the user retries with the same file
    log = world.run_once()
    assert not by_type(log, "ffmpeg_started")
    assert world.job(upload.job_id)["state"] == "failed"

    world.s3.upload_file(str(media.h264(320, 180, 2)), BUCKET, upload.key)  # a real match
    world.send(upload.message())
    log = world.run_once()

    job = world.job(upload.job_id)
    assert job["state"] == "succeeded" and job["error_code"] is None
    assert by_type(log, "job_started")
    asset = world.asset(upload.media_id)
    assert (asset["status"], asset["processing_stage"], asset["streaming_ready"]) == (
        "ready", "complete", True,
    )  # fmt: skip
    assert world.queue_counts() == (0, 0)


def _failed_earlier(world: World, upload, result: dict, finished: str) -> None:
    world.sql(
        "UPDATE jobs SET state = 'failed', error_code = 'STORAGE_UNAVAILABLE',"
        f" error_message = 'x', result = %s, finished_at = now() + interval '{finished}'"
        " WHERE id = %s",
        json.dumps(result), upload.job_id,
    )  # fmt: skip
    world.sql(
        "UPDATE media_assets SET status = 'failed', processing_stage = 'failed' WHERE id = %s",
        upload.media_id,
    )


def test_a_job_that_gave_up_on_transient_errors_runs_again(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2), send=False)
    _failed_earlier(world, upload, {"gave_up": True, "attempts": {"failed": 3}}, "0 s")
    world.send(upload.message())

    world.run_once()

    job = world.job(upload.job_id)
    assert job["state"] == "succeeded" and job["result"]["attempts"] == {"failed": 0, "crashed": 0}
    assert world.asset(upload.media_id)["status"] == "ready"


def test_a_job_failed_before_records_is_judged_on_the_uploads_time(world: World, media) -> None:
    replaced = world.upload(media.h264(320, 180, 2), send=False)
    _failed_earlier(world, replaced, {}, "-1 hour")  # the upload is newer than the failure
    same = world.upload(media.h264(320, 180, 2), send=False)
    _failed_earlier(world, same, {}, "1 hour")  # the failure saw this very upload
    world.send(replaced.message())
    world.send(same.message())

    world.run_once()
    world.run_once()

    assert world.job(replaced.job_id)["state"] == "succeeded"
    assert world.job(same.job_id)["state"] == "failed"
    assert world.asset(same.media_id)["status"] == "failed"
    assert world.queue_counts() == (0, 0)
