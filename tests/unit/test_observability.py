"""Event lines: JSON on stdout, syslog priorities for journald, no secrets."""

from __future__ import annotations

import io
import json
import os

from utils.observability import EventLog


def test_event_line_has_the_fields_the_queries_use() -> None:
    stream = io.StringIO()
    log = EventLog("cleanup", environment="jetson", worker="jetson-01", stream=stream)
    log.bind(job_id="j1").event("pass_finished", rows=3)
    record = json.loads(stream.getvalue())
    assert record["event_type"] == "cleanup_pass_finished"
    assert (record["environment"], record["severity"], record["worker"]) == (
        "jetson", "info", "jetson-01",
    )  # fmt: skip
    assert record["job_id"] == "j1" and record["rows"] == 3 and record["timestamp"]


def test_secrets_and_presigned_urls_never_reach_a_line() -> None:
    stream = io.StringIO()
    log = EventLog("transcode", environment="t", worker="w", stream=stream,
                   secrets=["super-secret-wasabi-value"])  # fmt: skip
    log.event(
        "oops",
        "error",
        detail="auth failed for super-secret-wasabi-value",
        url="https://s3.wasabisys.com/b/k.ts?X-Amz-Algorithm=AWS4&X-Amz-Signature=abcdef123",
        header="Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
    )
    line = stream.getvalue()
    assert "super-secret-wasabi-value" not in line
    assert "X-Amz-Signature" not in line and "abcdef123" not in line
    assert "abcdefghijklmnopqrstuvwxyz012345" not in line
    assert "https://s3.wasabisys.com/b/k.ts?[redacted]" in line


def test_journal_lines_carry_their_priority(tmp_path, monkeypatch) -> None:
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        log = EventLog("transcode", environment="t", worker="w", stream=stream)
        log.event("job_failed", "error")
        log.event("job_retry", "info")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("<3>{") and lines[1].startswith("<6>{")


def test_terminal_lines_are_plain_json(monkeypatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    stream = io.StringIO()
    EventLog("transcode", environment="t", worker="w", stream=stream).event("x")
    assert stream.getvalue().startswith("{")
