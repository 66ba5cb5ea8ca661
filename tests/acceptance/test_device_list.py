"""The admin dashboard's device list (`compute_devices`): the real daemon
keeps its row, says what is wrong, and says `offline` when it stops."""

from __future__ import annotations

import signal

from devstack.stack import free_port
from tests.support import World, start_worker, wait_for

DEVICE = "jetson-orin-nano-01"


def _row(world: World) -> dict | None:
    rows = world.sql(
        "SELECT *, extract(epoch FROM now() - last_heartbeat_at) AS age"
        " FROM compute_devices WHERE name = %s",
        DEVICE,
    )
    return rows[0] if rows else None


def test_the_device_row_is_kept_fresh_and_offline_after_a_clean_stop(world: World) -> None:
    proc = start_worker(world, RC_DEVICE_NAME=DEVICE, DEVICE_HEARTBEAT_SECONDS="1")
    try:
        wait_for(lambda: _row(world) is not None, 30, "the device row")
        first = _row(world)
        assert first["status"] == "online" and first["last_error"] is None
        assert first["hostname"] and first["cpu_cores"] >= 1
        assert first["memory_total_mb"] > first["memory_used_mb"] > 0
        assert first["device_type"] == "jetson_orin"  # the column's default, left alone
        wait_for(lambda: _row(world)["last_heartbeat_at"] > first["last_heartbeat_at"], 30,
                 "a second heartbeat")  # fmt: skip
        assert float(_row(world)["age"]) < 30  # the database's own clock
        assert _row(world)["cpu_utilization"] is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _row(world)["status"] == "offline"
    assert len(world.sql("SELECT 1 FROM compute_devices")) == 1  # upserted, never added twice


def test_unreachable_sqs_shows_the_device_degraded_and_why(world: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = start_worker(world, RC_DEVICE_NAME=DEVICE, DEVICE_HEARTBEAT_SECONDS="1",
                        AWS_ENDPOINT_URL_SQS=dead)  # fmt: skip
    try:
        wait_for(lambda: (_row(world) or {}).get("status") == "degraded", 60, "degraded")
        assert "SQS" in _row(world)["last_error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert _row(world)["status"] == "offline"


def test_a_failing_device_write_never_slows_a_job(world: World, media) -> None:
    world.stack.gateway.fail_matching("POST", "last_heartbeat_at", 10_000, 503)
    upload = world.upload(media.h264(320, 180, 2))
    run = world.run_worker("--once", RC_DEVICE_NAME=DEVICE, DEVICE_HEARTBEAT_SECONDS="1")
    assert run.returncode == 0, run.stderr
    assert world.job(upload.job_id)["state"] == "succeeded"
    assert _row(world) is None
    failures = [line for line in run.stdout.splitlines() if "device_report_failed" in line]
    assert len(failures) == 1, failures  # said once, not every beat
