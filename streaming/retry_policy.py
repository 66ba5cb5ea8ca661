"""How long a message stays invisible: pure functions of size and receive count."""

from __future__ import annotations

MAX_BACKOFF_SECONDS = 900


def visibility_for_size(size_bytes: int) -> int:
    """Initial visibility for an input of this size (the seed's table: 5 min
    under 100 MB … 60 min above 6 GB)."""
    mb = size_bytes / 1_000_000
    for limit_mb, seconds in ((100, 300), (500, 600), (1000, 900), (2000, 1200),
                              (4000, 1800), (6000, 2700)):  # fmt: skip
        if mb < limit_mb:
            return seconds
    return 3600


def retry_backoff(receive_count: int, base_seconds: int) -> int:
    """Visibility before the next try: base, 2×base, 4×base … capped at 15 min."""
    exponent = max(0, min(receive_count - 1, 10))
    return int(min(base_seconds * 2**exponent, MAX_BACKOFF_SECONDS))


def is_last_receive(receive_count: int, max_receive_count: int) -> bool:
    """True when SQS would move the message to the DLQ after this receive."""
    return receive_count >= max_receive_count
