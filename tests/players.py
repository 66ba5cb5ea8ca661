"""The web app's players, for real: hls.js 1.5 and Shaka Player 4.16 (npm,
`tests/player/`) in Debian's headless Chromium, playing a finished stream
from a loopback server the way viewers play it from the CDN (relative URIs
resolved against each playlist), every variant forced once.

Used by the playback tests; `play()` returns what the page reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import ROOT, require

PLAYER_DIR = ROOT / "tests" / "player"
PLAYERS = ("hls", "shaka")


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(found is not None, "chromium is not installed (scripts/bootstrap.sh)")
    require((PLAYER_DIR / "node_modules" / "hls.js").is_dir()
            and (PLAYER_DIR / "node_modules" / "shaka-player").is_dir(),
            "the players are not installed (npm ci in tests/player)")  # fmt: skip
    return str(found)


class _Handler(SimpleHTTPRequestHandler):
    """The page and the players from tests/player, the stream under /stream/."""

    stream: Path
    results: list[dict[str, Any]]
    done: threading.Event

    def log_message(self, *args: Any) -> None:
        pass

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean.startswith("/stream/"):
            return str(self.stream / clean[len("/stream/") :])
        return super().translate_path(path)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.results.append(json.loads(body or b"{}"))
        self.send_response(204)
        self.end_headers()
        self.done.set()


def play(
    stream: Path, player: str, at: list[float] = (), timeout: float = 180, lead: float = 1.0
) -> dict[str, Any]:
    """Play `stream/index.m3u8` with `player` ("hls" or "shaka")."""
    chromium = browser()
    done = threading.Event()
    handler = type("Handler", (_Handler,), {"stream": stream, "results": [], "done": done})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(PLAYER_DIR)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    times = ",".join(f"{t:.3f}" for t in at)
    url = (f"http://127.0.0.1:{server.server_address[1]}/player.html"
           f"?player={player}&src=/stream/index.m3u8&at={times}&lead={lead}")  # fmt: skip
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
             f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            finished = done.wait(timeout)
        finally:
            proc.kill()
            _, stderr = proc.communicate(timeout=30)
            server.shutdown()
            server.server_close()
    assert finished, f"the {player} page never reported; chromium said: {stderr[-1500:]}"
    return handler.results[0]


def assert_plays(
    stream: Path, at: list[float] = (), *, lead: float = 1.0, audio: bool = False,
    timeout: float = 180,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Both players play every variant (from `lead` seconds before each time
    in `at` to a second past it) without an error, and with `audio` decode
    sound all the while; returns their reports."""
    reports = {}
    for player in PLAYERS:
        report = play(stream, player, at, timeout, lead)
        # (hls.js fills a low-bitrate stream's buffer up to 600 s ahead and,
        # after many seeks, meets Chromium's 12 MB audio quota: it says so
        # with a non-fatal bufferFullError, evicts and plays on; every run
        # below must still have played, with sound)
        errors = [e for e in report["errors"] if e != "hls.js: mediaError bufferFullError"]
        assert errors == [], (player, report["errors"])
        assert len(report["levels"]) >= 1, report
        expected = len(report["levels"]) * max(1, len(at))
        assert len(report["played"]) == expected, (player, report["played"])
        for run in report["played"]:
            assert run["frames"] > 0, (player, run)
            assert run["seen_height"] == run["expected_height"], (player, run)
            assert not audio or run["audio_bytes"] > 0, (player, run)
        reports[player] = report
    return reports
