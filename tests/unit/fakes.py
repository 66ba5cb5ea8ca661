"""In-memory stand-ins for the database, the queue and the bucket, with the
semantics the fate depends on (compare-and-swap on state and attempt, one
clock, messages with receive counts), for fast unit tests of claim and settle.
The real services are tried in tests/integration and tests/acceptance."""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from streaming.services import Services
from utils.config import load_transcoder_settings
from utils.sqs_queue import Message, ReceiptInvalid
from utils.storage import StoredObject
from utils.supabase_db import DB_NOW, DatabaseUnavailable

ENV = {
    "SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "unit-test-key",
    "WASABI_ENDPOINT": "http://127.0.0.1:9", "WASABI_KEY": "unit-key",
    "WASABI_SECRET": "unit-secret", "SQS_QUEUE_URL": "http://127.0.0.1:9/queue",
    "BUCKET_NAME": "bucket", "RC_DEVICE_NAME": "unit-worker",
}  # fmt: skip


@dataclass
class FakeDb:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime(2026, 12, 1, tzinfo=timezone.utc))
    down: set[str] = field(default_factory=set)  # names of the calls that fail

    def _stamp(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: (self.now.isoformat() if v == DB_NOW else v) for k, v in fields.items()}

    def _call(self, name: str) -> None:
        if name in self.down:
            raise DatabaseUnavailable(f"{name}: injected")

    def server_now(self) -> datetime:
        return self.now

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        self._call("get_job")
        return copy.deepcopy(self.jobs.get(job_id))

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.assets.get(asset_id))

    def update_asset(self, asset_id: str, fields: dict[str, Any]) -> None:
        self._call("update_asset")
        if asset_id in self.assets:
            self.assets[asset_id].update(fields)

    def claim_job(
        self, job_id: str, seen: tuple[str, int], record: dict, stale_after: int | None
    ) -> int | None:
        self._call("claim_job")
        job = self.jobs[job_id]
        if (job["state"], job["attempt"]) != seen:
            return None
        if stale_after is not None:
            age = self.now - datetime.fromisoformat(job["updated_at"])
            if age <= timedelta(seconds=stale_after):
                return None
        job.update(self._stamp({"state": "running", "attempt": seen[1] + 1, "result": record,
                                "updated_at": DB_NOW, "started_at": DB_NOW}))  # fmt: skip
        return seen[1] + 1

    def _held(self, name: str, job_id: str, attempt: int, fields: dict[str, Any]) -> bool:
        self._call(name)
        job = self.jobs[job_id]
        if (job["state"], job["attempt"]) != ("running", attempt):
            return False
        job.update(self._stamp({**fields, "updated_at": DB_NOW}))
        return True

    def hold_job(self, job_id: str, attempt: int) -> bool:
        return self._held("hold_job", job_id, attempt, {})

    def renew_job(self, job_id: str, attempt: int, media_id: str, fraction: float, stage) -> bool:
        return self._held("renew_job", job_id, attempt, {"progress": fraction})

    def hand_over_job(self, job_id: str, attempt: int, record: dict) -> bool:
        self._call("hand_over_job")
        job = self.jobs[job_id]
        if (job["state"], job["attempt"]) != ("running", attempt):
            return False
        job["result"] = record
        return True

    def requeue_job(self, job_id: str, attempt: int, record: dict) -> bool:
        return self._held("requeue_job", job_id, attempt, {"state": "queued", "result": record})

    def fail_job(self, job_id: str, attempt: int, error: tuple[str, str], record: dict) -> bool:
        fields = {"state": "failed", "error_code": error[0], "error_message": error[1],
                  "finished_at": DB_NOW, "result": record}  # fmt: skip
        return self._held("fail_job", job_id, attempt, fields)

    def succeed_job(self, job_id: str, attempt: int, result: dict) -> bool:
        fields = {"state": "succeeded", "finished_at": DB_NOW, "result": result}
        return self._held("succeed_job", job_id, attempt, fields)


@dataclass
class FakeQueue:
    """Messages with receive counts; a receipt is valid until the next receive."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> message

    def send(self, body: str, delay: int = 0) -> str:
        message_id = str(uuid.uuid4())
        self.messages[message_id] = {"body": body, "count": 0, "receipt": None, "delay": delay,
                                     "hidden_for": delay}  # fmt: skip
        return message_id

    def receive_by_id(self, message_id: str) -> Message:
        m = self.messages[message_id]
        m["count"] += 1
        m["receipt"] = str(uuid.uuid4())
        return Message(message_id, m["receipt"], m["body"], m["count"])

    def _own(self, message: Message) -> dict[str, Any]:
        m = self.messages.get(message.message_id)
        if m is None or m["receipt"] != message.receipt_handle:
            raise ReceiptInvalid(message.message_id)
        return m

    def send_copy(self, message: Message, delay_seconds: int) -> str:
        return self.send(message.body, delay_seconds)

    def delete(self, message: Message) -> None:
        self._own(message)
        del self.messages[message.message_id]

    def set_visibility(self, message: Message, seconds: int) -> None:
        self._own(message)["hidden_for"] = seconds


@dataclass
class FakeStorage:
    keys: set[str] = field(default_factory=set)

    def delete_objects(self, bucket: str, objects: list[StoredObject]) -> list[StoredObject]:
        for o in objects:
            self.keys.discard(o.key)
        return []


class FakeNotifier:
    def watchdog(self) -> None:
        pass

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.is_set()  # no real waiting in the unit tier


def services(db: FakeDb, queue: FakeQueue, storage: FakeStorage | None = None) -> Services:
    return Services(
        settings=load_transcoder_settings(ENV),
        db=db,  # type: ignore[arg-type]
        storage=storage or FakeStorage(),  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        decoders=frozenset(),
        stop=threading.Event(),
        notifier=FakeNotifier(),  # type: ignore[arg-type]
    )
