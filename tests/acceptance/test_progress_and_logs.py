"""What the web app and the operator watch: progress, stages, logs, Axiom."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

from devstack.stack import free_port
from tests.support import ROOT, WORKER, World, axiom_server, events
from utils.observability import AxiomShipper, EventLog


def test_progress_rises_through_the_stages_and_writes_are_throttled(world: World, media) -> None:
    upload = world.upload(media.h264(1280, 720, 30))
    seen: list[tuple[str, int]] = []
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "--once"],
        env={
            **world.base_env(),
            **world.env,
            "PROGRESS_WRITE_SECONDS": "1",
            "TRANSCODE_PRESET": "veryfast",
        },  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    requests_before = len(world.stack.gateway.requests)
    started = time.monotonic()
    while proc.poll() is None:
        asset = world.asset(upload.media_id)
        seen.append((asset["processing_stage"], asset["transcode_progress"]))
        time.sleep(0.1)
    seconds = time.monotonic() - started
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    seen.append((world.asset(upload.media_id)["processing_stage"], 100))

    stages = [stage for stage, _ in seen]
    order = ["uploaded", "transcoding", "transcoded", "complete"]
    firsts = [stages.index(s) for s in order if s in stages]
    assert firsts == sorted(firsts) and "transcoding" in stages and stages[-1] == "complete"
    during = [p for stage, p in seen if stage == "transcoding"]
    assert len(set(during)) >= 3, during  # visibly rising, not 0 then 100
    assert during == sorted(during)
    patches = [r for r in world.stack.gateway.requests[requests_before:] if r[0] == "PATCH"]
    # progress: a job write + an asset write at most once a second; plus the stage writes
    assert len(patches) <= 2 * (seconds / 1.0 + 1) + 10, (len(patches), seconds)
    assert any(e["event_type"] == "transcode_job_succeeded" for e in events(out))


def test_worker_runs_from_inside_its_folder(world: World, media) -> None:
    upload = world.upload(media.h264(320, 180, 2))
    run = subprocess.run(
        [sys.executable, "stream_worker_sqs.py", "--once"],
        env={**world.base_env(), **world.env},
        cwd=ROOT / "streaming",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert world.job(upload.job_id)["state"] == "succeeded"


def test_unreachable_sqs_while_polling_is_logged_and_survived(world: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = world.run_worker("--once", AWS_ENDPOINT_URL_SQS=dead)
    assert run.returncode == 0, run.stderr
    failed = [e for e in events(run.stdout) if e["event_type"] == "transcode_poll_failed"]
    assert failed and failed[0]["severity"] == "warning"


def test_events_reach_axiom_in_batches_with_the_query_fields() -> None:
    ready = threading.Event()
    ready.set()
    server, handler = axiom_server(ready)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    shipper = AxiomShipper("xaat-test-token", "rugbycodex-logs", url, flush_seconds=0.2)
    log = EventLog("transcode", environment="jetson", worker="w", stream=io.StringIO(),
                   shipper=shipper)  # fmt: skip
    for i in range(50):
        log.event("job_progress", n=i)
    log.close(timeout=10)
    server.shutdown()
    assert len(handler.received) == 50
    assert len(handler.paths) < 50  # batched, not one request per event
    assert handler.paths[0] == "/v1/datasets/rugbycodex-logs/ingest"
    first = handler.received[0]
    assert (first["environment"], first["event_type"], first["severity"]) == (
        "jetson", "transcode_job_progress", "info",
    )  # fmt: skip


def test_stuck_axiom_never_blocks_logging_and_close_is_bounded() -> None:
    hold = threading.Event()  # the fake Axiom answers nothing until released
    server, handler = axiom_server(hold)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    stream = io.StringIO()
    shipper = AxiomShipper("xaat-test-token", "ds", url, flush_seconds=0.1, max_buffer=100)
    log = EventLog("transcode", environment="jetson", worker="w", stream=stream, shipper=shipper)

    def burst() -> None:
        for i in range(1000):
            log.event("tick", n=i)

    writer = threading.Thread(target=burst)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive()  # every call returned while Axiom was stuck
    assert len(stream.getvalue().splitlines()) == 1000
    assert shipper.dropped > 0  # a full buffer drops events instead of growing
    closer = threading.Thread(target=log.close, kwargs={"timeout": 1.0})
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive()
    hold.set()
    server.shutdown()


def test_dead_axiom_is_reported_at_most_once_a_minute() -> None:
    reports: list[tuple[str, str, int]] = []
    dead = f"http://127.0.0.1:{free_port()}"
    shipper = AxiomShipper("xaat-test-token", "ds", dead, flush_seconds=0.05,
                           report=lambda *args: reports.append(args))  # fmt: skip
    log = EventLog("transcode", environment="jetson", worker="w", stream=io.StringIO(),
                   shipper=shipper)  # fmt: skip
    for batch in range(5):
        for i in range(10):
            log.event("tick", batch=batch, n=i)
        deadline = time.monotonic() + 30
        while shipper.dropped < 10 * (batch + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
    log.close(timeout=5)
    assert shipper.dropped == 50 and shipper.sent == 0
    assert len(reports) == 1  # five failed batches, one report


def test_the_upload_functions_late_uploaded_write_heals_within_one_interval(
    world: World, media
) -> None:
    """The upload-completion function writes `processing_stage = 'uploaded'`
    after it sends the message (CONTRACT.md section 1), so it can land on top
    of a fast worker's `transcoding`: the next progress write puts it back."""
    upload = world.upload(media.h264(1280, 720, 30))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "--once"],
        env={**world.base_env(), **world.env, "PROGRESS_WRITE_SECONDS": "1",
             "TRANSCODE_PRESET": "veryfast"},  # fmt: skip
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while world.asset(upload.media_id)["transcode_progress"] < 15:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        world.sql(
            "UPDATE media_assets SET processing_stage = 'uploaded', status = 'uploaded'"
            " WHERE id = %s",
            upload.media_id,
        )  # the late write of the upload-completion function
        raced = time.monotonic()
        while world.asset(upload.media_id)["processing_stage"] == "uploaded":
            # One interval (1 s) is what it takes; 10 s leaves room for a loaded machine.
            assert time.monotonic() - raced < 10, "not healed by the next progress writes"
            time.sleep(0.05)
        healed = world.asset(upload.media_id)
        assert healed["processing_stage"] in ("transcoding", "transcoded", "complete")
        assert healed["status"] in ("processing", "ready")
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert world.asset(upload.media_id)["processing_stage"] == "complete"
