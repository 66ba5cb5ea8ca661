"""The transcoder's `--check` (utils/preflight.py): configuration, Supabase,
SQS, Wasabi, FFmpeg and the work dir, touching no job and no message."""

from __future__ import annotations

import shutil
import subprocess

from streaming.ffmpeg_runner import ffmpeg_components
from streaming.job_dir import work_dir_problem
from utils.config import TranscoderSettings
from utils.preflight import Check, CheckFailed, check_supabase, check_wasabi
from utils.sqs_queue import QueueUnavailable, WorkQueue
from utils.storage import Storage
from utils.supabase_db import Database

NEEDED_ENCODERS = ("libx264", "aac", "mjpeg")


def _check_sqs(queue: WorkQueue, name: str = "sqs") -> Check:
    def run() -> str:
        try:
            visible, hidden = queue.depth()
        except QueueUnavailable as exc:
            raise CheckFailed(str(exc)) from None
        return f"queue reachable: {visible} waiting, {hidden} in flight"

    return Check(name, run)


def _check_ffmpeg(settings: TranscoderSettings) -> Check:
    def run() -> str:
        for tool in (settings.ffmpeg_bin, settings.ffprobe_bin):
            if shutil.which(tool) is None:
                raise CheckFailed(f"{tool} not found")
        version = subprocess.run([settings.ffmpeg_bin, "-hide_banner", "-version"],
                                 capture_output=True, text=True, timeout=15)  # fmt: skip
        first = (version.stdout.splitlines() or ["?"])[0].split(" Copyright")[0]
        encoders = ffmpeg_components(settings.ffmpeg_bin, "encoders")
        missing = [e for e in NEEDED_ENCODERS if e not in encoders]
        if missing:
            raise CheckFailed(f"{first}: no {', '.join(missing)} encoder")
        decoders = ffmpeg_components(settings.ffmpeg_bin, "decoders")
        filters = ffmpeg_components(settings.ffmpeg_bin, "filters")
        hw = sorted(d for d in decoders if d.endswith("_nvv4l2dec")) or ["none (software)"]
        tonemap = "yes" if {"zscale", "tonemap"} <= filters else "no"
        return f"{first}; hardware decode: {', '.join(hw)}; HDR tone mapping: {tonemap}"

    return Check("ffmpeg", run)


def _check_work_dir(settings: TranscoderSettings) -> Check:
    def run() -> str:
        folder = settings.work_dir
        problem = work_dir_problem(folder)
        if problem:
            raise CheckFailed(problem)
        free = shutil.disk_usage(folder).free
        return f"{folder} writable, {free / 1024**3:.1f} GB free"

    return Check("work dir", run)


def transcoder_checks(settings: TranscoderSettings) -> list[Check]:
    common = settings.common
    ladder = ",".join(f"{r.height}p@{r.video_kbps}k" for r in settings.ladder)
    tables = ("jobs", "media_assets") + (("compute_devices",) if settings.device_name else ())
    parts = (
        [
            _check_sqs(
                WorkQueue(settings.parts_queue_url, settings.aws_region, read_timeout=8),
                "sqs parts",
            )
        ]  # fmt: skip
        if settings.parts_queue_url
        else []
    )
    return [
        Check("config", lambda: f"profile {settings.profile}, ladder {ladder}"),
        check_supabase(Database(common.supabase_url, common.supabase_key, timeout=8.0), tables),
        _check_sqs(WorkQueue(settings.queue_url, settings.aws_region, read_timeout=8)),
        *parts,
        check_wasabi(Storage.from_settings(common), common.bucket_name),
        _check_ffmpeg(settings),
        _check_work_dir(settings),
    ]
