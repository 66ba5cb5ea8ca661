"""Hostile uploads, messages and rows: each gets a clear error in the database
and the logs, and nothing is read or written where it must not be."""

from __future__ import annotations

import json
import uuid

import pytest

from streaming.media_probe import FEED_URL
from tests.support import BUCKET, World, by_type


@pytest.mark.parametrize(
    "clip_name, code, words",
    [
        ("zero_bytes", "INPUT_UNSUPPORTED", "empty"),
        ("concat_list", "INPUT_UNSUPPORTED", "not a readable video"),
        ("image", "INPUT_UNSUPPORTED", "not a readable video"),
        ("huge_resolution", "INPUT_TOO_LARGE", "9000x9000"),
        ("ten_hours", "INPUT_TOO_LARGE", "longer than 6 hours"),
    ],
)
def test_upload_that_is_not_what_it_claims(
    world: World, media, clip_name: str, code: str, words: str
) -> None:
    upload = world.upload(getattr(media, clip_name)())

    log = world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", code)
    assert words in job["error_message"]
    assert by_type(log, "job_failed")[0]["severity"] == "error"
    assert not by_type(log, "ffmpeg_started")  # refused before any transcode
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.work_dir_empty()


def test_absurd_frame_rate_is_capped(world: World, media) -> None:
    upload = world.upload(media.high_frame_rate())

    log = world.run_once()

    assert world.job(upload.job_id)["state"] == "succeeded"
    command = by_type(log, "ffmpeg_started")[0]["command"]
    assert "fps=60," in command[command.index("-filter_complex") + 1]


@pytest.mark.parametrize(
    "file_name",
    [
        "-i concat:a.ts|b.ts",
        "file:/etc/passwd",
        "http:127.0.0.1:1/x.mp4",
        "$(touch pwned); `id`.mp4",
        "..%2f..%2f%2e%2e%2fother.mp4",
    ],
)
def test_names_never_reach_a_shell_or_ffmpegs_parser(world: World, media, file_name: str) -> None:
    upload = world.upload(media.h264(320, 180, 2), file_name=file_name)

    log = world.run_once()

    assert world.job(upload.job_id)["state"] == "succeeded"
    command = by_type(log, "ffmpeg_started")[0]["command"]
    inputs = [command[i + 1] for i, arg in enumerate(command) if arg == "-i"]
    assert len(inputs) == 1 and FEED_URL.fullmatch(inputs[0])  # the job's own loopback feed
    assert command[command.index("-protocol_whitelist") + 1] == "http,tcp"
    assert not any(file_name in arg for arg in command)


def test_very_long_key_is_refused(world: World, media) -> None:
    upload = world.upload(None, send=False)
    key = upload.key.rsplit("/", 1)[0] + "/" + "a" * 1100 + ".mp4"
    world.sql("UPDATE media_assets SET storage_path = %s WHERE id = %s", key, upload.media_id)
    world.send(upload.message())

    world.run_once()

    assert world.job(upload.job_id)["error_code"] == "INPUT_INVALID_KEY"


def test_message_with_ids_of_another_org_touches_nothing(world: World, media) -> None:
    victim = world.upload(media.h264(320, 180, 2), send=False)
    attacker_org = str(uuid.uuid4())
    world.send(victim.message(org_id=attacker_org))
    world.send({"job_id": victim.job_id, "media_id": str(uuid.uuid4()), "org_id": victim.org_id})

    log = world.run_once() + world.run_once()

    assert [e["error_code"] for e in by_type(log, "message_rejected")] == [
        "JOB_MISMATCH", "JOB_MISMATCH",
    ]  # fmt: skip
    assert world.job(victim.job_id)["state"] == "queued"
    assert world.job(victim.job_id)["attempt"] == 1
    assert world.keys(f"orgs/{attacker_org}/") == []


def test_asset_row_of_another_org_is_refused(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2), send=False)
    world.sql("UPDATE media_assets SET org_id = %s WHERE id = %s", str(uuid.uuid4()),
              upload.media_id)  # fmt: skip
    world.send(upload.message())

    world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "JOB_MISMATCH")
    assert world.keys(upload.prefix + "streaming/") == []


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"job_id": "../../etc", "media_id": "x", "org_id": "y"}),
        json.dumps({"job_id": None, "media_id": None, "org_id": None}),
        json.dumps({"job_id": 1, "media_id": 2, "org_id": 3}),
        "{" * 10_000,
        json.dumps(
            {
                "job_id": str(uuid.uuid4()),
                "media_id": str(uuid.uuid4()),
                "org_id": str(uuid.uuid4()),
                "type": "delete_everything",
            }
        ),  # fmt: skip
    ],
)
def test_hostile_message_bodies_are_rejected_once(world: World, body: str) -> None:
    world.send(body)

    log = world.run_once()

    assert by_type(log, "message_rejected")[0]["error_code"] == "INVALID_MESSAGE"
    assert world.queue_counts() == (0, 0)
    assert world.keys("") == []
    assert BUCKET
