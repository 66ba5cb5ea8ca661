"""The clients and facts one transcoder process shares between its jobs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from streaming.device_report import Health
from utils.config import TranscoderSettings
from utils.sqs_queue import WorkQueue
from utils.storage import Storage
from utils.supabase_db import Database
from utils.systemd_notify import Notifier


@dataclass
class Services:
    settings: TranscoderSettings
    db: Database
    storage: Storage
    queue: WorkQueue
    decoders: frozenset[str]
    stop: threading.Event
    filters: frozenset[str] = frozenset({"zscale", "tonemap"})
    notifier: Notifier = field(default_factory=lambda: Notifier({}))
    health: Health = field(default_factory=Health)  # for the device list's status
    parts_queue: WorkQueue | None = None  # SQS_CHUNK_QUEUE_URL's queue, if set
