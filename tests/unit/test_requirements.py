"""requirements-floors.txt pins exactly the floors of requirements.txt, so the
floor smoke test (acceptance/test_floors.py) runs what an old Jetson runs."""

from __future__ import annotations

import re

from tests.support import ROOT


def _lines(name: str) -> list[str]:
    text = (ROOT / name).read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def _release(version: str) -> tuple[int, ...]:
    """`1.34` and `1.34.0` are the same release."""
    parts = [int(p) for p in version.split(".") if p.isdigit()]
    return tuple(parts + [0] * (3 - len(parts)))


def test_the_floors_file_pins_every_floor_of_the_requirements() -> None:
    floors = dict(re.match(r"([\w.-]+)>=([\w.]+)", line).groups()  # type: ignore[union-attr]
                  for line in _lines("requirements.txt"))  # fmt: skip
    pinned = dict(line.split("==") for line in _lines("requirements-floors.txt"))
    for package, version in floors.items():
        assert _release(pinned.get(package, "")) == _release(version), package
    assert set(pinned) - set(floors) == {"botocore", "s3transfer"}  # boto3 1.34.0's own
