"""A job's parts shared with every free worker through the part queue.

The worker that claims a job (its owner) encodes the first part it has to
do itself, and publishes the others on `SQS_CHUNK_QUEUE_URL`, each as soon
as its audio slice is ready (the slice goes into the job's
`transcode-parts/` folder beside the records, streaming/checkpoint.py).
Before any message goes out, `shared.json` says which parts are out there,
for the plan with which fingerprint: a part worker does a part only while
that holds, and an owner that takes the job over after a crash does not
publish them again.

Then the owner works on the part queue like any idle worker, until every
part is recorded: a part of its own job it encodes here, from the whole
upload it already has, under that part message's own heartbeat; a part of
another job it encodes as a part worker would (streaming/part_worker.py).
Meanwhile it adopts the records other workers write (their tiles and
poster too). A part it has heard nothing of for a long time (twice the
visibility extension plus three times the part's length: a part message
comes back within one extension after its worker dies), or one a part
worker marked failed, it encodes itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from streaming.audio_track import AudioTrack
from streaming.checkpoint import PartBook, SharedParts
from streaming.errors import JobAborted, JobError
from streaming.messages import PartRequest, TranscodeRequest, parse_part_message
from streaming.part_encode import Parts
from streaming.part_worker import delete_message, hand_back, handle_part, hold, release
from streaming.services import Services
from utils.observability import EventLog
from utils.sqs_queue import Message, QueueUnavailable, WorkQueue
from utils.storage import StorageUnavailable
from utils.visibility_heartbeat import VisibilityHeartbeat


@dataclass
class _Held:
    message: Message
    heartbeat: VisibilityHeartbeat


@dataclass
class Sharing:
    services: Services
    queue: WorkQueue
    request: TranscodeRequest
    book: PartBook
    renditions: list[str]
    log: EventLog
    waiting: list[int] = field(default_factory=list)  # to publish, in order
    published: dict[int, str] = field(default_factory=dict)  # part -> its audio
    failed: set[int] = field(default_factory=set)  # marked failed by a part worker
    held: dict[int, _Held] = field(default_factory=dict)  # own parts' messages, held
    quiet_since: float = field(default_factory=time.monotonic)
    last_look: float = float("-inf")
    walk: Parts | None = None

    @classmethod
    def open(
        cls, services: Services, request: TranscodeRequest, book: PartBook,
        renditions: list[str], log: EventLog,
    ) -> Sharing | None:  # fmt: skip
        """Sharing for this job, where a part queue is set and there is more than one part."""
        if services.parts_queue is None or book.plan.count < 2:
            return None
        return cls(services, services.parts_queue, request, book, renditions, log)

    @property
    def look_every(self) -> float:
        """Seconds between looks at the records other workers write (and, while
        the owner waits for them, at the part queue): a quarter of a long
        poll, 5 s as deployed (a second at the least)."""
        return max(1.0, self.services.settings.poll_seconds / 4)

    @property
    def lost_after(self) -> float:
        settings = self.services.settings
        return 2 * settings.heartbeat_extension_seconds + 3 * settings.part_seconds

    # --- the owner's walk ---------------------------------------------------------------

    def run(self, walk: Parts, todo: list[int]) -> None:
        """Every part in `todo` recorded, here or elsewhere."""
        self.walk = walk
        walk.on_tick = self.tick
        try:
            for k in self._start(todo):
                walk.encode(k)
            self._until_all_done(walk)
        except BaseException as exc:
            self._let_go(stopping=isinstance(exc, JobAborted) and not exc.lost)
            raise
        self._release_held(every=True)

    def _start(self, todo: list[int]) -> list[int]:
        """The parts to publish (those an earlier owner published are out
        there already); returns the one to encode here first."""
        earlier = self.book.read_shared()
        if earlier is not None and earlier.fingerprint == self.book.plan.fingerprint:
            self.published = dict(earlier.published)
        rest = [k for k in todo if k not in self.published]
        self.waiting = rest[1:]
        out_there = sorted(set(self.published) & set(todo))
        if out_there:
            self.log.event("parts_out_there", parts=out_there)
        self.tick()
        return rest[:1]

    def _until_all_done(self, walk: Parts) -> None:
        count = self.book.plan.count
        while True:
            walk.st.check()
            self.tick(force=True)
            missing = [k for k in range(count) if not self.book.done(k)]
            if not missing:
                return
            message = self._receive()
            if message is not None:
                self._handle(message, walk)
                continue
            k = self._take_back(missing)
            if k is not None:
                walk.encode(k)
                continue
            pause = time.monotonic() + self.look_every
            while time.monotonic() < pause:
                walk.st.check()
                time.sleep(0.05)

    def _receive(self) -> Message | None:
        """One look at the part queue (not a long poll: the records that
        other workers write are looked at in between)."""
        try:
            return self.queue.receive(0)
        except QueueUnavailable as exc:
            self.log.event("part_poll_failed", "warning", error=str(exc)[:300])
            return None

    def _handle(self, message: Message, walk: Parts) -> None:
        self.quiet_since = time.monotonic()
        try:
            part = parse_part_message(message.body)
        except JobError:
            part = None
        if part is None or not self._ours(part):
            handle_part(self.services, message, self.log.bind(part_of="another job"), walk.st.check)
            return
        k = part.part
        self.log.event("part_started", part=k, receive_count=message.receive_count, own=True)
        if self.book.done(k) or k in self.held:
            delete_message(self.queue, message, self.log, "done")
            return
        heartbeat = hold(self.queue, message, self.services.settings, self.log.bind(part=k))
        if heartbeat is None:
            return
        self.held[k] = _Held(message, heartbeat.__enter__())
        self.waiting = [w for w in self.waiting if w != k]
        walk.encode(k)

    def _ours(self, part: PartRequest) -> bool:
        return (
            part.job_id == self.request.job_id
            and part.fingerprint == self.book.plan.fingerprint
            and part.part < self.book.plan.count
        )

    def _take_back(self, missing: list[int]) -> int | None:
        """A part to encode here without a message: one marked failed, one
        not published yet, or one not heard of for `lost_after` seconds."""
        for k in missing:
            if k in self.failed or k in self.waiting:
                self.waiting = [w for w in self.waiting if w != k]
                why = "failed elsewhere" if k in self.failed else "not published"
                self.log.event("part_taken_back", "info", part=k, why=why)
                return k
        if time.monotonic() - self.quiet_since < self.lost_after:
            return None
        self.quiet_since = time.monotonic()
        k = next((k for k in missing if k not in self.held), None)
        if k is not None:
            self.log.event("part_taken_back", "warning", part=k, why="not heard of")
        return k

    # --- every tick: publish, adopt, let go of recorded parts' messages -------------------

    def tick(self, force: bool = False) -> None:
        self._publish_ready()
        self._release_held()
        now = time.monotonic()
        if not force and now - self.last_look < self.look_every:
            return
        self.last_look = now
        try:
            fresh, failed = self.book.refresh(self.renditions)
        except StorageUnavailable as exc:
            self.log.event("part_records_unreadable", "warning", error=str(exc)[:200])
            return
        self.failed.update(failed)
        if fresh and self.walk is not None:
            self.walk.adopt(fresh)
            self.walk.show(None)
            self.quiet_since = now
            self.log.event("parts_adopted", parts=fresh, of=self.book.plan.count)

    def _publish_ready(self) -> None:
        """Publish the waiting parts whose audio slices are ready, in order:
        their slices and `shared.json` first, then the messages."""
        ready: dict[int, Path | None] = {}
        audio = self.walk.audio if self.walk is not None else None
        for k in self.waiting:
            if audio is None:
                ready[k] = None
                continue
            assert isinstance(audio, AudioTrack)
            path = audio.ready(k)  # (raises if the track, or the download, failed)
            if path is None:
                break
            ready[k] = path
        if not ready:
            return
        plan, book = self.book.plan, self.book
        modes = {k: "none" if audio is None else "slice" for k in ready}
        try:
            for k, path in ready.items():
                if path is not None:
                    book.put(book.key(k, "nut"), path.read_bytes(), "application/octet-stream")
            shared = SharedParts(plan.fingerprint, plan.count, {**self.published, **modes})
            book.put(book.shared_key, shared.to_json(), "application/json")
            for k in ready:
                part = PartRequest(self.request.job_id, self.request.media_id,
                                   self.request.org_id, k, plan.fingerprint)  # fmt: skip
                self.queue.send(part.to_body())
                self.published[k] = modes[k]
                self.waiting.remove(k)
        except (StorageUnavailable, QueueUnavailable) as exc:  # tried again at the next tick
            self.log.event("parts_not_published", "warning", error=str(exc)[:300])
            return
        self.quiet_since = time.monotonic()
        self.log.event("parts_published", parts=sorted(ready), of=plan.count)

    def _release_held(self, every: bool = False) -> None:
        """Delete the messages of own parts now recorded (all of them at the end)."""
        for k in [k for k in self.held if every or k in self.book.recorded]:
            held = self.held.pop(k)
            held.heartbeat.stop()
            delete_message(self.queue, held.message, self.log, "recorded")

    def _let_go(self, stopping: bool) -> None:
        """The job ends here without its stream: the held parts' messages go
        back (a fresh copy at a stop; visible at once after a failure; left
        alone if the job was lost, as their leases may be too)."""
        for k in list(self.held):
            held = self.held.pop(k)
            held.heartbeat.stop()
            if held.heartbeat.lost.is_set():
                continue
            if stopping:
                hand_back(self.queue, held.message, self.log.bind(part=k))
            else:
                release(self.queue, held.message, 0, self.log.bind(part=k))
