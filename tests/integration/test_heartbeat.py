"""The visibility heartbeat against moto's real SQS API over HTTP."""

from __future__ import annotations

import io
import time

from devstack.stack import free_port
from tests.support import World
from utils.observability import EventLog
from utils.sqs_queue import WorkQueue
from utils.visibility_heartbeat import VisibilityHeartbeat


def _log() -> EventLog:
    return EventLog("transcode", environment="test", worker="t", stream=io.StringIO())


def _received(world: World, visibility: int = 2):
    queue = WorkQueue(world.queue_url, "us-east-1")
    world.send({"hello": "world"})
    message = queue.receive(wait_seconds=1)
    assert message is not None
    queue.set_visibility(message, visibility)
    return queue, message


def test_heartbeat_keeps_the_message_hidden_past_its_timeout(world: World) -> None:
    queue, message = _received(world, visibility=2)
    beat = VisibilityHeartbeat(
        queue, message, visible_until=time.monotonic() + 2, interval=1, extension=3, log=_log()
    )
    with beat:
        time.sleep(4.5)  # more than twice the original visibility
        assert world.queue_counts() == (0, 1)
    assert beat.beats >= 3 and not beat.lost.is_set()


def test_deleted_message_is_reported_lost(world: World) -> None:
    queue, message = _received(world)
    queue.delete(message)
    beat = VisibilityHeartbeat(
        queue, message, visible_until=time.monotonic() + 60, interval=1, extension=3, log=_log()
    )

    assert beat.beat() is False

    assert beat.lost.is_set() and "receipt handle" in beat.lost_reason


def test_unreachable_sqs_is_retried_until_the_visibility_runs_out(world: World) -> None:
    _, message = _received(world)
    dead = WorkQueue(world.queue_url, "us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}")
    now = [100.0]
    beat = VisibilityHeartbeat(
        dead, message, visible_until=150.0, interval=1, extension=3, log=_log(),
        clock=lambda: now[0],
    )  # fmt: skip

    assert beat.beat() is True and not beat.lost.is_set()  # transient: not lost yet

    now[0] = 151.0
    assert beat.beat() is False
    assert beat.lost.is_set() and "expired" in beat.lost_reason
