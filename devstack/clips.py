"""Short test clips made by FFmpeg (testsrc2 + sine), cached per test session."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path


def ffmpeg(*args: str, timeout: float | None = 300) -> None:
    """One quiet FFmpeg run (tests, demo and benchmarks make their clips with it)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        timeout=timeout,
        capture_output=True,
    )


class ClipFactory:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _cached(self, name: str, make: object) -> Path:
        path = self.folder / name
        if not path.exists():
            make(path)  # type: ignore[operator]
        return path

    def h264(
        self, width: int = 1280, height: int = 720, seconds: float = 8, *, audio: bool = True,
        fps: int = 30,
    ) -> Path:  # fmt: skip
        name = f"h264_{width}x{height}_{seconds}s_{fps}fps_{'a' if audio else 'na'}.mp4"

        def make(path: Path) -> None:
            inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
            codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
            if audio:
                inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
                codecs += ["-c:a", "aac", "-b:a", "96k"]
            ffmpeg(*inputs, "-t", str(seconds), *codecs, str(path))

        return self._cached(name, make)

    def rotated_portrait(self, seconds: float = 6) -> Path:
        """Stored 640x360 with a 90° display matrix: plays as 360x640 portrait."""
        return self.rotated(self.h264(640, 360, seconds), 90)

    def rotated(self, source: Path, degrees: int) -> Path:
        """`source` with a display matrix of `degrees` clockwise (stream copy)."""

        def make(path: Path) -> None:
            try:  # FFmpeg 6 and later (counter-clockwise there)
                ffmpeg("-display_rotation", str(-degrees), "-i", str(source), "-c", "copy",
                       str(path))  # fmt: skip
            except subprocess.CalledProcessError:  # FFmpeg 4.x/5.x (Debian 12, JetPack 6)
                ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}",
                       str(path))  # fmt: skip

        return self._cached(f"{source.stem}_rot{degrees}{source.suffix}", make)

    def hevc(self, seconds: float = 6) -> Path:
        def make(path: Path) -> None:
            ffmpeg(
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                "-f", "lavfi", "-i", "sine=frequency=330",
                "-t", str(seconds), "-c:v", "libx265", "-preset", "ultrafast",
                "-x265-params", "log-level=error", "-tag:v", "hvc1",
                "-c:a", "aac", str(path),
            )  # fmt: skip

        return self._cached(f"hevc_{seconds}s.mp4", make)

    def odd_size(self, seconds: float = 5) -> Path:
        """321x241: odd width and height (FFV1 in Matroska keeps them odd)."""

        def make(path: Path) -> None:
            ffmpeg(
                "-f", "lavfi", "-i", "testsrc2=size=321x241:rate=24",
                "-f", "lavfi", "-i", "sine=frequency=550",
                "-t", str(seconds), "-c:v", "ffv1", "-c:a", "pcm_s16le", str(path),
            )  # fmt: skip

        return self._cached(f"odd_{seconds}s.mkv", make)

    def truncated(self) -> Path:
        """A real MP4 (index first) cut to 30 %: the header promises 10 s, the data stops early."""

        def make(path: Path) -> None:
            whole = self.folder / "faststart_10s.mp4"
            ffmpeg(
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "10",
                "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", str(whole),
            )  # fmt: skip
            data = whole.read_bytes()
            path.write_bytes(data[: int(len(data) * 0.3)])

        return self._cached("truncated.mp4", make)

    def garbage(self) -> Path:
        """Random bytes with a video file's name."""

        def make(path: Path) -> None:
            import random

            path.write_bytes(random.Random(7).randbytes(200_000))

        return self._cached("garbage.mp4", make)

    def text(self) -> Path:
        def make(path: Path) -> None:
            path.write_text("this is not a video\n" * 100)

        return self._cached("notes.mp4", make)

    def playlist(self) -> Path:
        """An HLS playlist that names a local file: FFmpeg must never follow it."""

        def make(path: Path) -> None:
            path.write_text(
                "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/hostname\n"
                "#EXT-X-ENDLIST\n"
            )

        return self._cached("playlist.mp4", make)

    def zero_bytes(self) -> Path:
        return self._cached("empty.mp4", lambda path: path.write_bytes(b""))

    def concat_list(self) -> Path:
        """An FFmpeg concat script naming a local file."""
        return self._cached(
            "list.mp4",
            lambda path: path.write_text("ffconcat version 1.0\nfile '/etc/hostname'\n"),
        )

    def image(self) -> Path:
        return self._cached(
            "photo.mp4",
            lambda path: ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360",
                "-frames:v",
                "1",
                "-f",
                "image2",
                "-c:v",
                "png",
                str(path),
            ),  # fmt: skip
        )

    def huge_resolution(self) -> Path:
        """One 9000x9000 frame: a small file that would need gigabytes to scale."""
        return self._cached(
            "huge.mkv",
            lambda path: ffmpeg(
                "-f", "lavfi", "-i", "color=c=black:s=9000x9000:r=1:d=1", "-c:v", "mjpeg", str(path)
            ),  # fmt: skip
        )

    def ten_hours(self) -> Path:
        """A tiny, silent, 10-hour video: cheap to upload, costly to transcode."""
        return self._cached(
            "ten_hours.mkv",
            lambda path: ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "color=c=green:s=16x16:r=1:d=36000",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "3600",
                str(path),
            ),  # fmt: skip
        )

    def high_frame_rate(self) -> Path:
        """240 fps (phone slow motion): kept to at most 60 fps in the output."""
        return self._cached(
            "fps240.mp4",
            lambda path: ffmpeg(
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=240",
                "-t",
                "3",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                str(path),
            ),  # fmt: skip
        )

    def cover_art_first(self) -> Path:
        """An MP4 whose first video stream is its cover art (`attached_pic`), as
        files tagged by iTunes-like tools are: the match is the second one."""

        def make(path: Path) -> None:
            cover = path.with_suffix(".jpg")
            ffmpeg("-f", "lavfi", "-i", "color=red:size=320x320", "-frames:v", "1", str(cover))
            plain = path.with_suffix(".plain.mp4")
            ffmpeg(
                *video_source("640x360", "25", 4), *tone(4), "-i", str(cover),
                "-map", "0:v", "-map", "1:a", "-map", "2:v", "-c:v:0", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:v:1", "mjpeg",
                "-disposition:v:1", "attached_pic", "-c:a", "aac", str(plain),
            )  # fmt: skip
            path.write_bytes(_udta_first(plain.read_bytes()))  # the cover's stream comes first
            plain.unlink()
            cover.unlink()

        return self._cached("cover_art_first.mp4", make)

    def made(self, name: str, *args: str) -> Path:
        """A clip made by one FFmpeg command (`args` without the output), cached by name."""
        return self._cached(name, lambda path: ffmpeg(*args, str(path)))


def _atoms(data: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
    found, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8:
            break
        found.append((pos, size, kind))
        pos += size
    return found


def _udta_first(data: bytes) -> bytes:
    """The same MP4 with `moov/udta` (where the cover lives) moved before the
    tracks, so demuxers number the cover's stream first. Offsets into `mdat`
    do not move: only atoms inside `moov` change places."""
    out = bytearray(data)
    for pos, size, kind in _atoms(data, 0, len(data)):
        if kind == b"moov":
            kids = _atoms(data, pos + 8, pos + size)
            rank = {b"mvhd": 0, b"udta": 1}
            kids.sort(key=lambda atom: rank.get(atom[2], 2))
            out[pos + 8 : pos + size] = b"".join(data[p : p + n] for p, n, _ in kids)
    return bytes(out)


# Inputs of FFmpeg's test sources, reused by the coverage clips.
def video_source(size: str = "640x360", rate: str = "30", seconds: float = 4) -> list[str]:
    return ["-t", str(seconds), "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]


def tone(seconds: float = 4, layout: str = "stereo", delay: float = 0.0) -> list[str]:
    offset = ["-itsoffset", str(delay)] if delay else []
    return [*offset, "-t", str(seconds), "-f", "lavfi", "-i",
            f"sine=frequency=440:sample_rate=48000,aformat=channel_layouts={layout}"]  # fmt: skip
