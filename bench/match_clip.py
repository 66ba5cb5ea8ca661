#!/usr/bin/env python3
"""Generate a clip that resembles match footage, with FFmpeg only.

A mown (striped) green pitch larger than the frame, panned slowly like a
sideline camera, with film grain and a few small "players" and a "ball"
moving across it, plus crowd-like pink noise. Much harder for an encoder
than testsrc2's flat colours, and closer to what coaches upload.

    .venv/bin/python bench/match_clip.py out.mp4 --seconds 60 [--size 1920x1080] [--grain 25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.clips import ffmpeg  # noqa: E402


def make_match_clip(
    out: Path, seconds: float = 60, size: str = "1920x1080", fps: int = 30, grain: int = 5
) -> Path:
    """`grain` is the strength of the temporal noise (FFmpeg's `noise=alls=`):
    5 is a clean broadcast-like picture; 20-30 the grain of a club's camera
    in evening light, where a low rendition loses the most detail."""
    width, height = (int(v) for v in size.split("x"))
    pitch_w, pitch_h = int(width * 1.4), int(height * 1.3)
    with tempfile.TemporaryDirectory() as tmp:
        pitch = Path(tmp) / "pitch.png"
        # Mowing stripes and a little unevenness, drawn once.
        ffmpeg(
            "-f", "lavfi", "-i", f"color=c=0x3c7f2e:s={pitch_w}x{pitch_h}:d=1", "-vf",
            "geq=lum='p(X,Y)+14*gt(mod(X+Y/4,180),90)+6*sin(X/23)*sin(Y/17)'"
            ":cb='p(X,Y)':cr='p(X,Y)'",
            "-frames:v", "1", str(pitch),
        )  # fmt: skip
        pan = (
            f"crop={width}:{height}:x='({pitch_w}-{width})/2*(1+sin(t/9))':"
            f"y='({pitch_h}-{height})/2*(1+0.5*sin(t/13))'"
        )
        players = ",".join(
            f"drawbox=x='mod({x0}+t*{vx},{width})':y='{y0}+{amp}*sin(t/{per})':w={w}:h={h}"
            f":color={color}:t=fill"
            for x0, vx, y0, amp, per, w, h, color in [
                (100, 60, 300, 80, 3, 14, 32, "white"),
                (500, -45, 520, 60, 4, 14, 32, "white"),
                (900, 70, 420, 90, 5, 14, 32, "red"),
                (1300, -55, 700, 70, 2.5, 14, 32, "red"),
                (300, 90, 800, 40, 3.5, 14, 32, "navy"),
                (1600, -80, 350, 100, 6, 14, 32, "navy"),
                (700, 140, 600, 150, 1.7, 8, 8, "white"),
            ]
        )
        ffmpeg(
            "-loop", "1", "-framerate", str(fps), "-i", str(pitch),
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.08",
            "-filter_complex", f"[0:v]{pan},noise=alls={grain}:allf=t,{players},format=yuv420p[v]",
            "-map", "[v]", "-map", "1:a", "-t", str(seconds), "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "20", "-maxrate", "10M", "-bufsize", "20M",
            "-c:a", "aac", "-b:a", "128k", str(out), timeout=None,
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--grain", type=int, default=5, help="noise strength (5 clean, 25 grainy)")
    options = parser.parse_args()
    make_match_clip(options.out, options.seconds, options.size, grain=options.grain)


if __name__ == "__main__":
    main()
