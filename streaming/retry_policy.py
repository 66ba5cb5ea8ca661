"""How long a message stays away before its next try: pure functions."""

from __future__ import annotations

MAX_BACKOFF_SECONDS = 900


def retry_backoff(receive_count: int, base_seconds: int) -> int:
    """Visibility before the next try: base, 2×base, 4×base … capped at 15 min."""
    exponent = max(0, min(receive_count - 1, 10))
    return int(min(base_seconds * 2**exponent, MAX_BACKOFF_SECONDS))


def needs_fresh_copy(receive_count: int, max_receive_count: int) -> bool:
    """True when this message must not go back to the queue as it is: after
    this receive it has at most one left before SQS dead-letters it. One is
    kept in reserve because a worker that dies between receiving a message
    and acting on it (a power cut during a long poll) spends one without a
    trace. (A redrive of fewer than 3 receives leaves no reserve.)"""
    reserve = 1 if max_receive_count >= 3 else 0
    return receive_count >= max_receive_count - reserve
