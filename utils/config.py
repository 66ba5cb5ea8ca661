"""Configuration of both workers, read once from the environment.

systemd sets the environment from the shared `.env` (`EnvironmentFile=`); when
run by hand, python-dotenv loads the same file without overriding anything
already set. Every value is validated here, and every error names the variable
and the form it expects, so a bad deploy stops at start-up with one clear line.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOTENV_PATH = PROJECT_ROOT / ".env"

T = TypeVar("T")


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder: the short side in pixels and its bitrate cap."""

    height: int
    video_kbps: int


@dataclass(frozen=True)
class CommonSettings:
    supabase_url: str
    supabase_key: str
    wasabi_endpoint: str
    wasabi_region: str
    wasabi_key: str
    wasabi_secret: str
    bucket_name: str | None
    worker_name: str
    environment: str
    verbose: bool
    axiom_token: str | None
    axiom_dataset: str
    axiom_url: str | None

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        values = (self.supabase_key, self.wasabi_secret, self.wasabi_key, self.axiom_token)
        return tuple(v for v in values if v and len(v) >= 6)


@dataclass(frozen=True)
class TranscoderSettings:
    common: CommonSettings
    aws_region: str
    queue_url: str
    profile: str
    work_dir: Path
    ladder: tuple[Rung, ...]
    x264_preset: str
    x264_crf: int
    x264_params: str
    audio_kbps: int
    segment_seconds: int
    part_seconds: int  # a job's parts: whole segments (streaming/parts.py)
    storyboard_tile_width: int
    max_receive_count: int
    max_job_attempts: int
    retry_backoff_seconds: int
    heartbeat_interval_seconds: int
    heartbeat_extension_seconds: int
    job_stale_seconds: int
    progress_write_seconds: float
    ffmpeg_stall_seconds: int
    disk_space_factor: float
    disk_reserve_bytes: int
    ffmpeg_bin: str
    ffprobe_bin: str
    hw_decode: str
    device_name: str | None = None  # RC_DEVICE_NAME: this machine's row in compute_devices
    device_report_seconds: int = 20
    # SQS_CHUNK_QUEUE_URL: where a job's parts are shared between workers
    # (streaming/part_sharing.py); None keeps every job on the worker that claimed it
    parts_queue_url: str | None = None
    poll_seconds: int = 20  # one long poll of a queue (SQS allows 20 at most)


@dataclass(frozen=True)
class CleanupSettings:
    common: CommonSettings
    interval_seconds: int
    page_size: int


def load_dotenv_file() -> None:
    """Load `.env` beside the project without overriding the real environment."""
    if DOTENV_PATH.is_file():
        load_dotenv(DOTENV_PATH, override=False)


def load_at_startup(loader: Callable[[], T]) -> T | None:
    """`.env`, then `loader()`; on a bad setting, one line on stderr and None
    (the caller exits with EX_CONFIG, so systemd does not restart into it)."""
    load_dotenv_file()
    try:
        return loader()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return None


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, *names: str) -> str | None:
        for name in names:
            value = self.env.get(name, "").strip()
            if value:
                return value
        return None

    def required(self, name: str, *aliases: str, hint: str = "") -> str:
        value = self.raw(name, *aliases)
        if value is None:
            also = f" (or {', '.join(aliases)})" if aliases else ""
            raise ConfigError(f"{name}{also} is not set{': ' + hint if hint else ''}")
        return value

    def url(self, name: str, *, required: bool = True) -> str | None:
        value = self.required(name) if required else self.raw(name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http(s):// URL, got {value!r}")
        return value.rstrip("/") if value else value

    def parsed(self, name: str, default: T, parse: Callable[[str], T], form: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, ArithmeticError) as exc:
            raise ConfigError(f"{name} must be {form}, got {value!r}") from exc

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int = 10**12) -> int:
        def parse(text: str) -> int:
            number = int(text)
            if not minimum <= number <= maximum:
                raise ValueError(text)
            return number

        return self.parsed(name, default, parse, f"an integer from {minimum} to {maximum}")

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        def parse(text: str) -> float:
            number = float(text)
            if not number >= minimum or number == float("inf"):
                raise ValueError(text)
            return number

        return self.parsed(name, default, parse, f"a number of at least {minimum}")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(text: str) -> bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)

        return self.parsed(name, default, parse, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(text: str) -> str:
            if text not in choices:
                raise ValueError(text)
            return text

        return self.parsed(name, default, parse, f"one of {', '.join(choices)}")


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """`"1080:5000,720:2800"` → rungs, tallest first. Raises ValueError."""
    rungs = []
    for item in text.split(","):
        height_text, sep, kbps_text = item.strip().partition(":")
        if not sep:
            raise ValueError(item)
        height, kbps = int(height_text), int(kbps_text)
        if not (64 <= height <= 4320 and height % 2 == 0 and 100 <= kbps <= 100_000):
            raise ValueError(item)
        rungs.append(Rung(height, kbps))
    if not rungs or len({r.height for r in rungs}) != len(rungs):
        raise ValueError(text)
    return tuple(sorted(rungs, key=lambda r: r.height, reverse=True))


@dataclass(frozen=True)
class Profile:
    """A named encoding profile: ladder and x264 speed, chosen with TRANSCODE_PROFILE.

    TRANSCODE_LADDER, TRANSCODE_PRESET and TRANSCODE_CRF override its parts.
    """

    ladder: str
    preset: str
    crf: int
    x264_params: str = ""  # beyond the preset (x264's own `key=value:…`)


PROFILES = {
    # The Orin Nano: six A78AE cores, no hardware encoder. Coaches see 1080p
    # today (the live setup: one 1080p rendition, x264 ultrafast at 2 Mbit/s),
    # so the top rung is the source's own 1080p, plus 540p for phones on
    # mobile data. ultrafast with CABAC and the deblocking filter turned back
    # on: for ~10 % more encoder time, a clearly better picture per bit, so
    # the 1080p rung holds at least the live output's SSIM with fewer bits,
    # and the whole job (both rungs, storyboard, poster) still takes less
    # time than the live transcode plus its storyboard pass. bench/RESULTS.md.
    "jetson": Profile("1080:1900,540:600", "ultrafast", 23, "cabac=1:deblock=1"),
    # Machines with headroom (ECS, a desktop): a fuller ladder, better per bit.
    "quality": Profile("1080:5000,720:2800,480:1400,360:800", "medium", 21),
}

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
)  # fmt: skip


def load_common(env: Mapping[str, str]) -> CommonSettings:
    read = _Reader(env)
    return CommonSettings(
        supabase_url=read.url("SUPABASE_URL") or "",
        supabase_key=read.required("SUPABASE_SERVICE_ROLE_KEY"),
        wasabi_endpoint=read.url("WASABI_ENDPOINT") or "",
        wasabi_region=read.raw("WASABI_REGION") or "us-east-1",
        wasabi_key=read.required("WASABI_KEY"),
        wasabi_secret=read.required("WASABI_SECRET"),
        bucket_name=read.raw("BUCKET_NAME"),
        worker_name=read.raw("RC_DEVICE_NAME") or socket.gethostname(),
        environment=read.raw("AXIOM_ENVIRONMENT") or "jetson",
        verbose=read.boolean("VERBOSE_LOGGING", False),
        axiom_token=read.raw("AXIOM_API_TOKEN"),
        axiom_dataset=read.raw("AXIOM_DATASET") or "rugbycodex-logs",
        axiom_url=read.url("AXIOM_URL", required=False),
    )


def load_transcoder_settings(env: Mapping[str, str] | None = None) -> TranscoderSettings:
    env = os.environ if env is None else env
    read = _Reader(env)
    common = load_common(env)
    segment = read.integer("HLS_SEGMENT_SECONDS", 6, 2, 20)
    interval = read.integer("HEARTBEAT_INTERVAL_SECONDS", 240, 1, 3600)
    extension = read.integer("HEARTBEAT_EXTENSION_SECONDS", 300, 2, 43200)
    if extension <= interval:
        raise ConfigError(
            "HEARTBEAT_EXTENSION_SECONDS must be larger than HEARTBEAT_INTERVAL_SECONDS "
            f"({extension} <= {interval}): the message would become visible between beats"
        )
    profile = PROFILES[read.choice("TRANSCODE_PROFILE", "jetson", tuple(PROFILES))]
    return TranscoderSettings(
        common=common,
        profile=read.raw("TRANSCODE_PROFILE") or "jetson",
        aws_region=read.raw("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
        queue_url=_queue_url(read),
        work_dir=Path(read.raw("TRANSCODE_WORK_DIR") or "/tmp/transcode"),
        ladder=read.parsed(
            "TRANSCODE_LADDER",
            parse_ladder(profile.ladder),
            parse_ladder,
            "comma-separated HEIGHT:KBPS pairs with even heights, e.g. 1080:5000,720:2800",
        ),
        x264_preset=read.choice("TRANSCODE_PRESET", profile.preset, X264_PRESETS),
        x264_crf=read.integer("TRANSCODE_CRF", profile.crf, 0, 51),
        x264_params=profile.x264_params,
        audio_kbps=read.integer("TRANSCODE_AUDIO_KBPS", 128, 32, 512),
        segment_seconds=segment,
        part_seconds=_whole_segments(read.integer("TRANSCODE_PART_SECONDS", 300, 2, 7200), segment),
        storyboard_tile_width=read.integer("STORYBOARD_TILE_WIDTH", 320, 64, 1280),
        max_receive_count=read.integer("MAX_RECEIVE_COUNT", 3, 1, 1000),
        max_job_attempts=read.integer("MAX_JOB_ATTEMPTS", 3, 1, 100),
        retry_backoff_seconds=read.integer("RETRY_BACKOFF_SECONDS", 60, 0, 43200),
        heartbeat_interval_seconds=interval,
        heartbeat_extension_seconds=extension,
        # A copy of a message must be able to wait out a lease (SQS delays 900 s at most).
        job_stale_seconds=read.integer("JOB_STALE_SECONDS", 270, 5, 880),
        progress_write_seconds=read.number("PROGRESS_WRITE_SECONDS", 5.0, 0.0),
        ffmpeg_stall_seconds=read.integer("FFMPEG_STALL_SECONDS", 600, 5, 86400),
        disk_space_factor=read.number("DISK_SPACE_FACTOR", 2.5, 1.0),
        disk_reserve_bytes=read.integer("DISK_RESERVE_MB", 512, 0) * 1024 * 1024,
        ffmpeg_bin=read.raw("FFMPEG_BIN") or "ffmpeg",
        ffprobe_bin=read.raw("FFPROBE_BIN") or "ffprobe",
        hw_decode=read.choice("HW_DECODE", "auto", ("auto", "off")),
        device_name=read.raw("RC_DEVICE_NAME"),
        device_report_seconds=read.integer("DEVICE_HEARTBEAT_SECONDS", 20, 1, 30),
        parts_queue_url=_parts_queue_url(read),
        poll_seconds=read.integer("SQS_WAIT_SECONDS", 20, 1, 20),
    )


def _whole_segments(seconds: int, segment: int) -> int:
    """A part's length rounded to whole segments (one at least)."""
    return max(1, round(seconds / segment)) * segment


def _queue_url(read: _Reader) -> str:
    value = read.required(
        "SQS_QUEUE_URL", "SQS_TRANSCODE_QUEUE_URL", hint="the transcode queue's URL"
    )
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"SQS_QUEUE_URL must be an http(s):// URL, got {value!r}")
    return value


def _parts_queue_url(read: _Reader) -> str | None:
    value = read.raw("SQS_CHUNK_QUEUE_URL")
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"SQS_CHUNK_QUEUE_URL must be an http(s):// URL, got {value!r}")
    if value.rstrip("/") == _queue_url(read).rstrip("/"):
        raise ConfigError(
            "SQS_CHUNK_QUEUE_URL must be a queue of its own: part messages on the job "
            "queue would reach workers that do not understand them"
        )
    return value


def load_cleanup_settings(env: Mapping[str, str] | None = None) -> CleanupSettings:
    env = os.environ if env is None else env
    read = _Reader(env)
    return CleanupSettings(
        common=load_common(env),
        interval_seconds=read.integer("CLEANUP_INTERVAL_SECONDS", 21600, 1, 7 * 86400),
        page_size=read.integer("CLEANUP_PAGE_SIZE", 500, 1, 10000),
    )
