"""Structured events: one JSON object per line on stdout, optionally to Axiom.

Every line carries `timestamp`, `severity`, `event_type`, `environment`,
`worker` and `service`; a job's events also carry its ids (see `bind`). When
stdout is the journal, each line starts with its syslog priority (`<3>` …),
which journald strips and turns into the entry's priority, so
`journalctl -p err` lists exactly the error events.

Axiom shipping runs on a thread of its own with a bounded queue: a slow or
dead Axiom costs a job nothing (events are dropped, and the failure is
reported at most once a minute). Secrets and presigned URLs are scrubbed from
the serialised line, so no field can leak them by accident.
"""

from __future__ import annotations

import inspect
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

SEVERITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_PRESIGNED = re.compile(
    r"(https?://[^\s\"'?]+)\?[^\s\"']*(?:X-Amz-Signature|X-Amz-Credential|Signature=|AWSAccessKeyId)[^\s\"']*",
    re.IGNORECASE,
)
_AUTH = re.compile(r"(Bearer|apikey[\"':= ]+)\s*[A-Za-z0-9._\-]{12,}", re.IGNORECASE)


def journal_is_stdout(stream: TextIO) -> bool:
    """True when `stream` is the journal's stream socket (systemd sets JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        text = _PRESIGNED.sub(r"\1?[redacted]", text)
        return _AUTH.sub(r"\1 [redacted]", text)


class AxiomShipper:
    """Sends events to Axiom in batches from a background thread."""

    def __init__(
        self,
        token: str,
        dataset: str,
        url: str | None = None,
        *,
        batch_size: int = 500,
        flush_seconds: float = 2.0,
        max_buffer: int = 10_000,
        request_timeout: float = 10.0,
        report: Any = None,
    ) -> None:
        # Imported here: only when Axiom is configured.
        from axiom_py import Client
        from requests.adapters import HTTPAdapter, Retry

        # axiom-py 0.9 (the floor) names the endpoint `url_base`; later ones `url`.
        takes_url = "url" in inspect.signature(Client.__init__).parameters
        self.client = Client(token=token, **{"url" if takes_url else "url_base": url})
        # axiom-py retries 3 times with 4 s and 8 s pauses; one quick retry is
        # enough for a log sink, and keeps the flush at stop short.
        quick = HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0.5,
                                              status_forcelist=[502, 503, 504],
                                              allowed_methods=None))  # fmt: skip
        self.client.session.mount("http://", quick)
        self.client.session.mount("https://", quick)
        request = self.client.session.request

        def request_with_timeout(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", request_timeout)
            return request(method, path, *args, **kwargs)

        self.client.session.request = request_with_timeout  # type: ignore[method-assign]
        self.dataset = dataset
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_buffer)
        self.report = report
        self.dropped = 0
        self.sent = 0
        self._last_report = float("-inf")
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="axiom-shipper", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _take_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if self._closing.is_set():
                remaining = 0
            try:
                batch.append(self.queue.get(timeout=max(remaining, 0.0)) if remaining > 0
                             else self.queue.get_nowait())  # fmt: skip
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch:
                self._send(batch)
            elif self._closing.is_set():
                return

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.client.ingest_events(self.dataset, batch)
            self.sent += len(batch)
        except Exception as exc:  # any failure of a log sink must stay in the sink
            self.dropped += len(batch)
            now = time.monotonic()
            if self.report is not None and now - self._last_report >= 60:
                self._last_report = now
                self.report(type(exc).__name__, str(exc)[:300], self.dropped)

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is buffered, waiting at most `timeout` seconds."""
        self._closing.set()
        self._thread.join(timeout)


class EventLog:
    """`log.event("job_started", job_id=...)` writes one JSON line.

    `service` ("transcode" or "cleanup") prefixes every `event_type`, so the
    shared modules' events land under the right worker in Axiom queries.
    """

    def __init__(
        self,
        service: str,
        *,
        environment: str,
        worker: str,
        verbose: bool = False,
        secrets: Iterable[str] = (),
        stream: TextIO | None = None,
        shipper: AxiomShipper | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.environment = environment
        self.worker = worker
        self.verbose = verbose
        self.redact = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
        self.stream = stream if stream is not None else sys.stdout
        self.journal = journal_is_stdout(self.stream)
        self.shipper = shipper
        self.fields = dict(fields or {})
        self._lock = threading.Lock()

    def bind(self, **fields: Any) -> EventLog:
        """A log whose every event also carries `fields` (e.g. a job's ids)."""
        child = EventLog.__new__(EventLog)
        child.__dict__.update(self.__dict__)
        child.fields = {**self.fields, **fields}
        return child

    def event(self, event_type: str, severity: str = "info", **fields: Any) -> None:
        if severity not in SEVERITIES:
            severity = "info"
        if severity == "debug" and not self.verbose:
            return
        if not event_type.startswith(self.service + "_"):
            event_type = f"{self.service}_{event_type}"
        record: dict[str, Any] = {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "severity": severity,
            "event_type": event_type,
            "environment": self.environment,
            "worker": self.worker,
            "service": self.service,
            **self.fields,
            **fields,
        }
        line = self.redact(json.dumps(record, default=str, ensure_ascii=False))
        prefix = f"<{SEVERITIES[severity]}>" if self.journal else ""
        with self._lock:
            try:
                self.stream.write(prefix + line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the worker down
        if self.shipper is not None:
            self.shipper.put(json.loads(line))

    def close(self, timeout: float = 5.0) -> None:
        if self.shipper is not None:
            self.shipper.close(timeout)


def build_event_log(service: str, common: Any, stream: TextIO | None = None) -> EventLog:
    """The event log for a daemon, shipping to Axiom when a token is configured."""
    log = EventLog(
        service,
        environment=common.environment,
        worker=common.worker_name,
        verbose=common.verbose,
        secrets=common.secrets(),
        stream=stream,
    )
    if common.axiom_token:

        def report(kind: str, detail: str, dropped: int) -> None:
            log.event(
                "axiom_unavailable",
                "warning",
                error=kind,
                detail=detail,
                events_dropped=dropped,
            )

        log.shipper = AxiomShipper(
            common.axiom_token, common.axiom_dataset, common.axiom_url, report=report
        )
    return log
