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
import math
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streaming.ffmpeg_command import EncodeOptions, OutputLayout, transcode_command  # noqa: E402
from streaming.ladder import Rendition, choose_renditions  # noqa: E402
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


def our_command(source: Path, out: Path, variant: Variant, seconds: float) -> tuple[list[str], str]:
    info = probe("ffprobe", source)
    renditions = variant.renditions(source)
    layout = OutputLayout(out / "streaming")
    layout.thumbnails.mkdir(parents=True)
    layout.tiles.mkdir()
    options = EncodeOptions(variant.preset, variant.crf, 128, 6, 320, x264_params=variant.params)
    command = transcode_command("ffmpeg", source, layout, info, renditions, options, None)
    command[command.index("-i") : command.index("-i")] = ["-t", str(seconds)]
    return command, renditions[0].name


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def video_kbps(playlist: Path) -> float:
    """Video bitrate of a rendition (total TS bytes minus the 128k audio)."""
    segments = [p for p in playlist.parent.glob(playlist.stem + "_*.ts")]
    total = sum(p.stat().st_size for p in segments) * 8
    duration = float(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(playlist)], capture_output=True, text=True, check=True).stdout)  # fmt: skip
    return total / duration / 1000 - 128


def has_vmaf() -> bool:
    filters = subprocess.run(["ffmpeg", "-hide_banner", "-filters"], capture_output=True,
                             text=True).stdout  # fmt: skip
    return " libvmaf " in filters


def quality(playlist: Path, source: Path, seconds: float, vmaf: bool) -> tuple[float, float]:
    """SSIM (and VMAF when this FFmpeg has it) of a rendition against the source,
    the rendition scaled up to the source's size with bicubic as a player would."""
    width, height = probe("ffprobe", source).width, probe("ffprobe", source).height
    metric = "[a][b]ssim" + (";[c][d]libvmaf" if vmaf else "")
    split_a, split_b = (",split[a][c]", ",split[b][d]") if vmaf else ("[a]", "[b]")
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-i", str(playlist), "-t", str(seconds), "-i", str(source),
         "-lavfi", f"[0:v]setpts=PTS-STARTPTS,scale={width}:{height}:flags=bicubic{split_a};"
         f"[1:v]setpts=PTS-STARTPTS{split_b};{metric}", "-f", "null", "-"],
        capture_output=True, text=True)  # fmt: skip
    ssim_value = float(re.search(r"All:([0-9.]+)", result.stderr).group(1))
    found = re.search(r"VMAF score: ([0-9.]+)", result.stderr)
    return ssim_value, float(found.group(1)) if found else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--variants",
        default="jetson; jetson ladder=720:2000,360:500 crf=21 params=; quality",
        help="profiles to run, separated by ';', each optionally with ladder=, crf=, preset=",
    )
    options = parser.parse_args()
    variants = {v.strip(): Variant.parse(v) for v in options.variants.split(";")}
    vmaf = has_vmaf()
    base = Path(tempfile.mkdtemp(prefix="encode-profiles-"))
    try:
        times: dict[str, list[tuple[float, float]]] = {"live": [], "live-sb": []}
        tops: dict[str, Path] = {}
        for run in range(options.runs):  # interleaved, so drift hits every command alike
            out = base / f"live-{run}"
            out.mkdir()
            times["live"].append(timed(live_command(options.source, out, options.seconds)))
            times["live-sb"].append(timed(live_storyboard_command(options.source, out,
                                                                  options.seconds)))  # fmt: skip
            tops["live"] = out / "live.m3u8"
            for number, (name, variant) in enumerate(variants.items()):
                out = base / f"ours{number}-{run}"
                command, top = our_command(options.source, out, variant, options.seconds)
                times.setdefault(name, []).append(timed(command))
                tops[name] = out / "streaming" / f"{top}.m3u8"
        rows = []
        for name in ["live", *variants]:
            kbps = video_kbps(tops[name])
            rows.append((name, times[name], kbps, *quality(tops[name], options.source,
                                                          options.seconds, vmaf)))  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    live_wall = statistics.median(t for t, _ in times["live"])
    print(f"input: {options.source.name}, first {options.seconds:.0f} s, {options.runs} runs "
          "each, interleaved; software decode")  # fmt: skip
    print(f"{'command':<44} {'renditions':<22} {'wall s':>7} {'spread':>7} {'CPU s':>6} "
          f"{'speed vs live':>14} {'top kbps':>9} {'top SSIM':>9} {'VMAF':>6}")  # fmt: skip
    for name, runs, kbps, ssim_value, vmaf_value in rows:
        wall = statistics.median(t for t, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        spread = max(t for t, _ in runs) - min(t for t, _ in runs)
        label = "live (ultrafast/zerolatency)" if name == "live" else name
        sizes = (
            "1080p"
            if name == "live"
            else "+".join(r.name for r in variants[name].renditions(options.source))
        )
        print(f"{label:<44} {sizes:<22} {wall:>7.1f} {spread:>7.1f} {cpu:>6.1f} "
              f"{live_wall / wall:>13.2f}x {kbps:>9.0f} {ssim_value:>9.4f} "
              f"{'n/a' if math.isnan(vmaf_value) else f'{vmaf_value:.1f}':>6}")  # fmt: skip
    two_pass = live_wall + statistics.median(t for t, _ in times["live-sb"])
    for name in variants:
        print(
            f"one pass ({name}) / live two passes (transcode + storyboard): "
            f"{statistics.median(t for t, _ in times[name]) / two_pass:.2f}"
        )
    return 0


@dataclass(frozen=True)
class Variant:
    """A profile, optionally with its ladder, CRF or preset changed."""

    profile: str
    ladder: str
    crf: int
    preset: str
    params: str

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`jetson` or `jetson ladder=720:2000,360:500 crf=21 params=` (x264 params)."""
        profile, *overrides = text.split()
        chosen = PROFILES[profile]
        values = dict(item.split("=", 1) for item in overrides)
        ladder = values.get("ladder", chosen.ladder)
        crf = int(values.get("crf", chosen.crf))
        preset = values.get("preset", chosen.preset)
        return cls(profile, ladder, crf, preset, values.get("params", chosen.x264_params))

    def renditions(self, source: Path) -> list[Rendition]:
        info = probe("ffprobe", source)
        return choose_renditions(info.width, info.height, parse_ladder(self.ladder))


if __name__ == "__main__":
    sys.exit(main())
