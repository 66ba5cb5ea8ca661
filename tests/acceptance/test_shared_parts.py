"""One match, many workers: a job's parts shared through the part queue
(SQS_CHUNK_QUEUE_URL), on the real stack (marker `slow`).

A 48-s 720p clip with a continuous tone and a keyframe every 2 s (a
camera's is 0.5-2 s), encoded with x264 `veryfast` (so that encoding, not
a part's fixed costs, is most of its time, as in a real match): in four
parts of 12 s for the speed-up, in eight of 6 s for the stops and kills.
Timing is production's at 1/30 (tests/support.py `scaled`; one long poll:
20 s → 1 s). The wall times compared are the owner's
`job_succeeded` seconds, from its claim to the settlement, measured in the
same test.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from streaming.ffmpeg_command import SEEK_MARGIN
from tests.players import assert_plays
from tests.support import (
    World,
    assert_continuous,
    check_final_output,
    clip_with_tone,
    logged,
    parts_queue,
    scaled,
    start_worker_logging_to,
    wait_for,
    wait_for_logged,
)

pytestmark = pytest.mark.slow

SECONDS = 48
GOP_SECONDS = 2
# What a part worker reads besides its span, whatever the upload's size: the
# probe's first megabytes, the index, and the blocks fetched ahead (input_feed.py).
FIXED_READ = 12 * 1024 * 1024


def _clip(media, name: str):
    # (`veryfast`: a third of `ultrafast`'s bytes, 7.6 Mbit/s, which moto, sharing the
    # two cores, would serve at a cost the workers pay)
    return clip_with_tone(media, name, "1280x720", SECONDS, gop=30 * GOP_SECONDS,
                          preset="veryfast")  # fmt: skip


def _env(world: World, part_seconds: int, preset: str) -> dict[str, str]:
    url, _ = parts_queue(world)
    return {**scaled(world), "SQS_CHUNK_QUEUE_URL": url, "SQS_WAIT_SECONDS": "1",
            "TRANSCODE_PART_SECONDS": str(part_seconds), "TRANSCODE_PRESET": preset}  # fmt: skip


def _nothing_left(world: World, env: dict[str, str]) -> bool:
    queues = [world.queue_url, world.dlq_url, env["SQS_CHUNK_QUEUE_URL"]]
    queues.append(world.sqs.get_queue_url(QueueName="rugbycodex-transcode-parts-dlq")["QueueUrl"])
    return all(world.queue_counts(url) == (0, 0) for url in queues)


def _run(world: World, logs: list[Path], cpus: list[str | None], env: dict[str, str]) -> None:
    """Workers (one per log) until the job succeeded and every queue is
    empty; the first one starts alone, and claims the job."""
    procs = []

    def start(log: Path, cpu: str | None) -> None:
        work = str(log.with_suffix(".work"))
        procs.append(start_worker_logging_to(world, log, cpu, **env, TRANSCODE_WORK_DIR=work))

    try:
        start(logs[0], cpus[0])
        wait_for_logged(logs[0], "transcode_job_started")
        for log, cpu in zip(logs[1:], cpus[1:], strict=True):
            start(log, cpu)
        wait_for_logged(logs[0], "transcode_job_succeeded", timeout=400)
        wait_for(lambda: _nothing_left(world, env), timeout=60, what="empty queues")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def _succeeded_seconds(log: Path) -> float:
    return float(wait_for_logged(log, "transcode_job_succeeded")[0]["seconds"])


def test_two_workers_share_a_match(world: World, media, tmp_path: Path) -> None:
    """Two workers, each held to one core, against one such worker alone."""
    parts, part_seconds = 4, 12
    clip = _clip(media, "shared.mp4")
    env = _env(world, part_seconds, "veryfast")
    alone = world.upload(clip)
    _run(world, [tmp_path / "alone.log"], ["0"], env)
    assert world.job(alone.job_id)["state"] == "succeeded"
    alone_seconds = _succeeded_seconds(tmp_path / "alone.log")

    upload = world.upload(clip)
    owner, helper = tmp_path / "owner.log", tmp_path / "helper.log"
    # (the owner starts first, so it is the one that claims the job)
    _run(world, [owner, helper], ["0", "1"], env)
    shared_seconds = _succeeded_seconds(owner)
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["parts"] == parts
    assert shared_seconds <= 0.65 * alone_seconds, (shared_seconds, alone_seconds)

    own = {e["part"] for e in logged(owner) if e["event_type"] == "transcode_part_finished"}
    theirs = {e["part"] for e in logged(helper) if e["event_type"] == "transcode_part_ended"
              and e["outcome"] == "recorded"}  # fmt: skip
    assert own and theirs and own | theirs == set(range(parts)), (own, theirs)
    # a part worker reads its part's span (from the keyframe before its seek
    # margin), not the whole upload
    span = (part_seconds + SEEK_MARGIN + GOP_SECONDS) / SECONDS
    size = clip.stat().st_size
    fetched = [e["fetched_bytes"] for e in logged(helper)
               if e["event_type"] == "transcode_part_input_read"]  # fmt: skip
    assert fetched and all(f <= span * size + FIXED_READ for f in fetched), (fetched, size)

    assert world.keys(upload.prefix + "transcode-parts/") == []
    check_final_output(world, upload, tmp_path)
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "shared")
    assert_continuous(local, clip)
    joins = [k * part_seconds for k in sorted(theirs)]
    assert_plays(local, at=[t + 1.0 for t in joins[:3]], lead=4.0, audio=True)  # from 3 s before


def test_stopped_and_killed_part_workers_and_a_killed_owner(
    world: World, media, tmp_path: Path
) -> None:
    """SIGTERM a part worker in the middle of its part (it hands the part
    back, uncharged), SIGKILL the next one in the middle of its part, then
    the job's owner in the middle of the job: a last worker finishes, with
    one stream and nothing left on any queue."""
    parts = 8
    clip = _clip(media, "shared.mp4")
    env = _env(world, SECONDS // parts, "veryfast")
    upload = world.upload(clip)
    logs = {n: tmp_path / f"{n}.log" for n in ("owner", "stopped", "killed", "last")}
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str) -> None:
        work = str(tmp_path / f"{name}.work")
        procs[name] = start_worker_logging_to(world, logs[name], **env, TRANSCODE_WORK_DIR=work)

    def mid_part(name: str, how: signal.Signals) -> int:
        """Signal the worker once its first part's FFmpeg runs; returns the part."""
        part = wait_for_logged(logs[name], "transcode_part_started")[0]["part"]
        wait_for_logged(logs[name], "transcode_ffmpeg_started")
        procs[name].send_signal(how)
        procs[name].wait(timeout=60)
        return part

    try:
        start("owner")
        wait_for_logged(logs["owner"], "transcode_parts_published")
        start("stopped")
        handed_back = mid_part("stopped", signal.SIGTERM)
        wait_for_logged(logs["stopped"], "transcode_part_handed_back", part=handed_back)
        start("killed")
        mid_part("killed", signal.SIGKILL)  # its message comes back after its visibility
        wait_for_logged(logs["owner"], "transcode_part_recorded", 2)
        started = len([e for e in logged(logs["owner"])
                       if e["event_type"] == "transcode_ffmpeg_started"])  # fmt: skip
        wait_for_logged(logs["owner"], "transcode_ffmpeg_started", started + 1)
        procs["owner"].send_signal(signal.SIGKILL)  # mid-job, and mid-part
        procs["owner"].wait(timeout=30)
        assert world.job(upload.job_id)["state"] == "running"
        start("last")
        wait_for(lambda: world.job(upload.job_id)["state"] == "succeeded", 300, "success")
        wait_for(lambda: _nothing_left(world, env), timeout=90, what="empty queues")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job
    assert job["result"]["parts"] == parts
    assert job["result"]["parts_adopted"], "the last worker adopted the recorded parts"
    finals = [e for e in logged(logs["last"]) if e["event_type"] == "transcode_job_succeeded"]
    assert len(finals) == 1
    # the part handed back at the stop came back as a fresh message: not charged
    taken = [e for name in ("owner", "killed", "last") for e in logged(logs[name])
             if e["event_type"] == "transcode_part_started"]  # fmt: skip
    again = sorted((e["timestamp"], e["receive_count"]) for e in taken if e["part"] == handed_back)
    assert again and again[0][1] == 1, again
    assert world.keys(upload.prefix + "transcode-parts/") == []
    check_final_output(world, upload, tmp_path)
    streaming = world.keys(upload.prefix + "streaming/")
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    assert_continuous(local, clip)
    # only the segments the playlists name are left (the stopped and killed runs' went)
    named = {line for p in local.glob("*.m3u8") for line in p.read_text().splitlines()
             if line.endswith(".ts")}  # fmt: skip
    assert {k.rsplit("/", 1)[1] for k in streaming if k.endswith(".ts")} == named
