"""Settings: every missing or malformed value stops start-up naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import WORKER
from utils.config import ConfigError, Rung, load_cleanup_settings, load_transcoder_settings

BASE = {
    "SUPABASE_URL": "https://example.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "WASABI_ENDPOINT": "https://s3.us-east-1.wasabisys.com",
    "WASABI_KEY": "wasabi-key",
    "WASABI_SECRET": "wasabi-secret",
    "SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/rugbycodex-transcode-jobs",
}


def test_defaults_match_the_seed() -> None:
    settings = load_transcoder_settings(BASE)
    assert str(settings.work_dir) == "/tmp/transcode"
    assert settings.heartbeat_interval_seconds == 240
    assert settings.heartbeat_extension_seconds == 300
    assert settings.max_receive_count == 3
    assert settings.profile == "jetson" and settings.ladder == (Rung(1080, 1900), Rung(540, 600))
    assert (settings.x264_preset, settings.x264_crf) == ("ultrafast", 23)
    assert settings.x264_params == "cabac=1:deblock=1"
    quality = load_transcoder_settings({**BASE, "TRANSCODE_PROFILE": "quality"})
    assert quality.ladder[-1] == Rung(360, 800) and quality.x264_preset == "medium"
    mixed = load_transcoder_settings(
        {**BASE, "TRANSCODE_PROFILE": "quality", "TRANSCODE_PRESET": "fast"}
    )
    assert mixed.x264_preset == "fast" and mixed.x264_crf == 21
    assert load_cleanup_settings(BASE).interval_seconds == 21600


def test_older_queue_variable_and_device_name_still_work() -> None:
    env = {**BASE, "SQS_QUEUE_URL": "", "SQS_TRANSCODE_QUEUE_URL": BASE["SQS_QUEUE_URL"],
           "RC_DEVICE_NAME": "jetson-orin-nano-01"}  # fmt: skip
    settings = load_transcoder_settings(env)
    assert settings.queue_url == BASE["SQS_QUEUE_URL"]
    assert settings.common.worker_name == "jetson-orin-nano-01"


@pytest.mark.parametrize(
    "change, named",
    [
        ({"SUPABASE_URL": ""}, "SUPABASE_URL"),
        ({"SUPABASE_URL": "example.supabase.co"}, "SUPABASE_URL"),
        ({"SQS_QUEUE_URL": ""}, "SQS_QUEUE_URL"),
        ({"WASABI_SECRET": ""}, "WASABI_SECRET"),
        ({"TRANSCODE_LADDER": "1080p"}, "TRANSCODE_LADDER"),
        ({"TRANSCODE_LADDER": "721:1000"}, "TRANSCODE_LADDER"),
        ({"MAX_RECEIVE_COUNT": "three"}, "MAX_RECEIVE_COUNT"),
        ({"VERBOSE_LOGGING": "maybe"}, "VERBOSE_LOGGING"),
        ({"TRANSCODE_PRESET": "placebo"}, "TRANSCODE_PRESET"),
        ({"TRANSCODE_PROFILE": "fastest"}, "TRANSCODE_PROFILE"),
        ({"HEARTBEAT_EXTENSION_SECONDS": "100"}, "HEARTBEAT_EXTENSION_SECONDS"),
    ],
)
def test_bad_setting_is_named(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_transcoder_settings({**BASE, **change})


def test_worker_refuses_to_start_with_one_clear_line(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", **BASE, "WASABI_KEY": ""}
    result = subprocess.run(
        [sys.executable, str(WORKER), "--once"], env=env, capture_output=True, text=True,
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert lines == ["configuration error: WASABI_KEY is not set"]
