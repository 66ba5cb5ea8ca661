"""Hostile uploads, messages and rows: each gets a clear error in the database
and the logs, and nothing is read or written where it must not be."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streaming.input_feed import FEED_PLACEHOLDER
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
    assert inputs[0] == FEED_PLACEHOLDER  # the job's own loopback feed, its URL never logged
    # and the part's slice of the audio track, which the job encoded itself
    assert all(i.startswith(f"file:{world.work_dir}/") and i.endswith(".nut") for i in inputs[1:])
    assert command[command.index("-protocol_whitelist") + 1] == "http,tcp"
    assert not any(file_name in arg for arg in command)
    assert not FEED_URL.search(json.dumps(log))


def test_a_playlist_naming_an_http_address_fetches_nothing(world: World, tmp_path) -> None:
    """The demuxer whitelist, seen on its own: the feed is HTTP, so the
    protocol whitelist lets `http` through, and only the refusal of the `hls`
    demuxer keeps FFmpeg from fetching what an uploaded playlist names (on
    ECS, the task's credentials endpoint)."""
    hits: list[str] = []

    class Counting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    playlist = tmp_path / "playlist.mp4"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n"
        + "".join(f"#EXTINF:10,\nhttp://127.0.0.1:{port}/seg{i}.ts\n" for i in range(3))
        + "#EXT-X-ENDLIST\n"
    )
    try:
        upload = world.upload(playlist)
        world.run_once()
    finally:
        server.shutdown()
        server.server_close()
    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "INPUT_UNSUPPORTED")
    assert hits == []
    assert world.keys(upload.prefix + "streaming/") == []


def test_cover_art_before_the_video_is_not_what_gets_encoded(world: World, media) -> None:
    upload = world.upload(media.cover_art_first())

    log = world.run_once()

    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    assert by_type(log, "input_probed")[0]["video_stream"] == 1
    graph = by_type(log, "ffmpeg_started")[0]["command"]
    assert "[0:1]" in graph[graph.index("-filter_complex") + 1]
    assert (job["result"]["source"]["width"], job["result"]["source"]["height"]) == (640, 360)
    assert [(r["width"], r["height"]) for r in job["result"]["renditions"]][0] == (640, 360)


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


@pytest.mark.parametrize("base", ["orgs/{org}/archive/", "", "orgs/{other}/uploads/"])
def test_an_asset_rooted_anywhere_else_is_refused(world: World, media, base: str) -> None:
    upload = world.upload(media.h264(320, 180, 2), send=False)
    rooted = base.format(org=upload.org_id, other=uuid.uuid4())
    world.sql("UPDATE media_assets SET base_org_storage_path = %s WHERE id = %s", rooted,
              upload.media_id)  # fmt: skip
    world.send(upload.message())

    log = world.run_once()

    job = world.job(upload.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "STORAGE_BASE_INVALID")
    assert "base_org_storage_path" in job["error_message"]
    assert world.asset(upload.media_id)["status"] == "failed"
    assert by_type(log, "job_failed")[0]["severity"] == "error"
    assert world.keys(upload.prefix + "streaming/") == []
    assert world.queue_counts() == (0, 0)
