#!/usr/bin/env python3
"""Encoding profiles against the live worker's FFmpeg command, same input.

Live: one 1080p rendition, `-preset ultrafast -tune zerolatency -b:v 2000k`
(software decode here on both sides). Ours: the worker's real one-process
command (every rendition + storyboard tiles + poster) for each profile.
Reports the median wall time of N runs with its spread, the speed ratio
(live time / our time: above 1 means ours is faster), the top rendition's
video bitrate and its SSIM against the source. One pass vs two (issue 7.2) is
measured too: ours as is, against the live transcode plus the separate
storyboard decode the live worker runs.

    .venv/bin/python bench/encode_profiles.py bench/out/match60.mp4 [--runs 3] [--seconds 30]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streaming.ffmpeg_command import EncodeOptions, OutputLayout, transcode_command  # noqa: E402
from streaming.ladder import choose_renditions  # noqa: E402
from streaming.media_probe import probe  # noqa: E402
from utils.config import PROFILES, parse_ladder  # noqa: E402


def live_command(source: Path, out: Path, seconds: float) -> list[str]:
    return ["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", str(seconds), "-i", str(source),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", "2000k",
            "-c:a", "aac", "-b:a", "128k", "-f", "hls", "-hls_time", "6",
            "-hls_playlist_type", "vod", "-hls_segment_filename", str(out / "live_%05d.ts"),
            str(out / "live.m3u8")]  # fmt: skip


def live_storyboard_command(source: Path, out: Path, seconds: float) -> list[str]:
    """The live worker's second full decode, for the storyboard sprites."""
    return ["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", str(seconds), "-i", str(source),
            "-vf", "fps=1/6,scale=320:-2,tile=5x5", "-q:v", "5",
            str(out / "sprite_%03d.jpg")]  # fmt: skip


def our_command(source: Path, out: Path, profile: str, seconds: float) -> tuple[list[str], str]:
    info = probe("ffprobe", source)
    chosen = PROFILES[profile]
    renditions = choose_renditions(info.width, info.height, parse_ladder(chosen.ladder))
    layout = OutputLayout(out / "streaming")
    layout.thumbnails.mkdir(parents=True)
    layout.tiles.mkdir()
    options = EncodeOptions(chosen.preset, chosen.crf, 128, 6, 320)
    command = transcode_command("ffmpeg", source, layout, info, renditions, options, None)
    command[command.index("-i") : command.index("-i")] = ["-t", str(seconds)]
    return command, renditions[0].name


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def video_kbps(playlist: Path) -> float:
    """Video bitrate of a rendition (total TS bytes minus the 128k audio)."""
    segments = [p for p in playlist.parent.glob(playlist.stem + "_*.ts")]
    total = sum(p.stat().st_size for p in segments) * 8
    duration = float(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(playlist)], capture_output=True, text=True, check=True).stdout)  # fmt: skip
    return total / duration / 1000 - 128


def ssim(playlist: Path, source: Path, seconds: float) -> float:
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-i", str(playlist), "-t", str(seconds), "-i", str(source),
         "-lavfi", "[0:v]setpts=PTS-STARTPTS[a];[1:v]setpts=PTS-STARTPTS[b];[a][b]ssim",
         "-f", "null", "-"], capture_output=True, text=True)  # fmt: skip
    return float(re.search(r"All:([0-9.]+)", result.stderr).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--profiles", default="jetson,quality")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)

        def measure(name: str, make: object) -> list[float]:
            times = []
            for run in range(options.runs):
                out = base / f"{name}-{run}"
                out.mkdir()
                times.append(make(out))  # type: ignore[operator]
                if run < options.runs - 1:
                    shutil.rmtree(out)
            return times

        live = measure(
            "live", lambda out: timed(live_command(options.source, out, options.seconds))
        )
        live_out = base / f"live-{options.runs - 1}" / "live.m3u8"
        live_sb = measure("live-sb", lambda out: timed(
            live_storyboard_command(options.source, out, options.seconds)))  # fmt: skip
        rows.append(("live (1080p, ultrafast/zerolatency)", live, video_kbps(live_out),
                     ssim(live_out, options.source, options.seconds), None))  # fmt: skip
        for profile in options.profiles.split(","):
            top = {}

            def ours(out: Path, profile: str = profile, top: dict = top) -> float:
                command, top["name"] = our_command(options.source, out, profile, options.seconds)
                return timed(command)

            times = measure(profile, ours)
            playlist = base / f"{profile}-{options.runs - 1}" / "streaming" / f"{top['name']}.m3u8"
            rows.append((f"{profile} (all renditions + storyboard)", times, video_kbps(playlist),
                         ssim(playlist, options.source, options.seconds), profile))  # fmt: skip
    live_median = statistics.median(live)
    print(f"input: {options.source.name}, first {options.seconds:.0f} s, {options.runs} runs")
    print(f"{'command':<40} {'median s':>9} {'spread':>8} {'speed vs live':>14} "
          f"{'top kbps':>9} {'top SSIM':>9}")  # fmt: skip
    for name, times, kbps, quality, _ in rows:
        median = statistics.median(times)
        spread = max(times) - min(times)
        print(f"{name:<40} {median:>9.1f} {spread:>8.1f} {live_median / median:>13.2f}x "
              f"{kbps:>9.0f} {quality:>9.4f}")  # fmt: skip
    two_pass = live_median + statistics.median(live_sb)
    for name, times, *_ in rows[1:]:
        print(
            f"one pass ({name.split()[0]}) / live two passes (transcode + storyboard): "
            f"{statistics.median(times) / two_pass:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
