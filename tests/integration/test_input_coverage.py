"""Every kind of upload coaches make comes out as a stream that plays, upright,
in sync, with the right duration and a quality floor (tests/support.py).

SSIM floors (FFmpeg's ssim filter, rendition against the source scaled to its
size, on these synthetic clips with the default `jetson` profile, x264
ultrafast with CABAC and deblocking): 0.95 for renditions of 720 lines and
more, 0.88 below. The tightest case is the 59.94 fps clip held to the lower
rung's 600 kbit/s cap: x264's rate control under a VBV cap with several threads
is not bit-exact from run to run, and it measured 0.898-0.905 over four runs.
testsrc2 is harder than match footage
for x264 (sharp synthetic edges and small text everywhere), so a floor met
here has margin on real video; the benchmark clip's figures are in
bench/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.clips import tone, video_source
from tests.support import World, check_stream, probe


def ssim_floor(width: int, height: int) -> float:
    return 0.95 if min(width, height) >= 720 else 0.88


# name: (FFmpeg arguments making the clip (output name added), file suffix,
#        has audio, expected rendition sizes, filter giving the source as the
#        viewer should see it, for SSIM)
CASES: dict[str, tuple[list[str], str, bool, list[tuple[int, int]], str]] = {
    "h264_8bit_camera_1080p50": (
        [*video_source("1920x1080", "50", 3), *tone(3), "-c:v", "libx264", "-preset",
         "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
        "mp4", True, [(1920, 1080), (960, 540)], "",
    ),
    "h264_high10": (
        [*video_source(), *tone(), "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p10le", "-profile:v", "high10", "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "h264_422": (
        [*video_source(), *tone(), "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv422p", "-profile:v", "high422", "-c:a", "aac"],
        "mov", True, [(640, 360)], "",
    ),
    "hevc_10bit": (
        [*video_source(), *tone(), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt",
         "yuv420p10le", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "vp9_webm": (
        [*video_source(), *tone(), "-c:v", "libvpx-vp9", "-deadline", "realtime",
         "-cpu-used", "8", "-b:v", "2M", "-c:a", "libopus"],
        "webm", True, [(640, 360)], "",
    ),
    "av1_mkv": (
        [*video_source(rate="24"), *tone(), "-c:v", "libsvtav1", "-preset", "12",
         "-crf", "30", "-c:a", "libopus"],
        "mkv", True, [(640, 360)], "",
    ),
    "mpeg2_ts": (
        [*video_source("720x576", "25"), *tone(), "-c:v", "mpeg2video", "-q:v", "2",
         "-c:a", "mp2"],
        "ts", True, [(676, 540)], "",
    ),
    "prores_mov": (
        [*video_source(), *tone(), "-c:v", "prores_ks", "-profile:v", "0", "-c:a", "pcm_s16le"],
        "mov", True, [(640, 360)], "",
    ),
    "mjpeg_mov_no_audio": (
        [*video_source(), "-c:v", "mjpeg", "-q:v", "3"],
        "mov", False, [(640, 360)], "",
    ),
    "rotated_180": (
        [*video_source(), *tone(), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "portrait_270_phone_1080x1920": (
        [*video_source("1920x1080", "30", 3), *tone(3), "-c:v", "libx264", "-preset",
         "ultrafast", "-c:a", "aac"],
        "mp4", True, [(1080, 1920), (540, 960)], "",
    ),
    "ntsc_23_976": (
        [*video_source(rate="24000/1001"), *tone(), "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "ntsc_29_97": (
        [*video_source(rate="30000/1001"), *tone(), "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "ntsc_59_94": (
        [*video_source(rate="60000/1001"), *tone(), "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "variable_frame_rate": (
        [*video_source(rate="30", seconds=4), *tone(),
         "-vf", "select='lt(n\\,30)+not(mod(n\\,3))'", "-vsync", "vfr",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
    "interlaced_broadcast": (
        [*video_source("720x576", "25"), *tone(), "-vf", "interlace", "-c:v", "libx264",
         "-preset", "ultrafast", "-flags", "+ilme+ildct", "-top", "1", "-c:a", "aac"],
        "ts", True, [(676, 540)], "bwdif=mode=send_frame:parity=auto:deint=all",
    ),
    "anamorphic_16_9_pal": (
        [*video_source("720x576", "25"), *tone(), "-vf", "setsar=64/45", "-c:v", "libx264",
         "-preset", "ultrafast", "-c:a", "aac"],
        "mp4", True, [(960, 540)], "",
    ),
    "surround_5_1": (
        [*video_source(), *tone(layout="5.1"), "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-ac", "6"],
        "mp4", True, [(640, 360)], "",
    ),
    "audio_starts_late": (
        [*video_source(seconds=5), *tone(3.5, delay=1.5), "-c:v", "libx264", "-preset",
         "ultrafast", "-c:a", "aac"],
        "mkv", True, [(640, 360)], "",
    ),
    "audio_before_video_in_file": (
        [*tone(), *video_source(), "-map", "0:a", "-map", "1:v", "-c:v", "libx264",
         "-preset", "ultrafast", "-c:a", "aac"],
        "mkv", True, [(640, 360)], "",
    ),
    "index_at_the_end": (
        [*video_source(), *tone(), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "mp4", True, [(640, 360)], "",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_upload_kind_plays_right(world: World, media, tmp_path: Path, name: str) -> None:
    args, suffix, audio, sizes, source_filter = CASES[name]
    clip = media.made(f"{name}.{suffix}", *args)
    if name.startswith(("rotated_", "portrait_")):  # display matrix, as phones write it
        clip = media.rotated(clip, int(name.split("_")[1]))
    upload = world.upload(clip, file_name=f"upload.{suffix}")

    run = world.run_worker(TRANSCODE_PRESET="")  # the profile's own preset, not the tests'

    assert run.returncode == 0, run.stderr
    job = world.job(upload.job_id)
    assert job["state"] == "succeeded", job["error_message"]
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    report = check_stream(
        local, clip, audio=audio, ssim_floor=ssim_floor, source_filter=source_filter
    )
    assert [tuple(v["resolution"]) for v in report.variants] == sizes


def test_interlaced_input_comes_out_progressive(world: World, media, tmp_path: Path) -> None:
    args, suffix, *_ = CASES["interlaced_broadcast"]
    clip = media.made(f"interlaced_broadcast.{suffix}", *args)
    assert probe(clip, "-show_streams")["streams"][0]["field_order"] in ("tt", "tb")
    upload = world.upload(clip)

    world.run_once()

    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    segment = sorted(local.glob("*_00000.ts"))[0]
    video = probe(segment, "-select_streams", "v:0", "-show_streams")["streams"][0]
    assert video.get("field_order", "progressive") == "progressive"


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_is_tone_mapped_to_sdr(world: World, media, tmp_path: Path, transfer: str) -> None:
    """A real HDR clip (SDR test pattern converted to PQ or HLG, 10-bit HEVC)
    comes out tagged BT.709 and as bright as the SDR original, not washed out."""
    sdr = media.made("sdr_for_hdr.mp4", *video_source(), "-c:v", "libx264", "-preset",
                     "ultrafast", "-pix_fmt", "yuv420p")  # fmt: skip
    hdr = media.made(
        f"hdr_{transfer}.mp4", "-i", str(sdr), "-vf",
        f"zscale=tin=bt709:pin=bt709:min=bt709:t={transfer}:p=bt2020:m=bt2020nc:npl=100,"
        "format=yuv420p10le",
        "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
        "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc",
        "-tag:v", "hvc1",
    )  # fmt: skip
    upload = world.upload(hdr)

    world.run_once()

    assert world.job(upload.job_id)["state"] == "succeeded"
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    segment = sorted(local.glob("*_00000.ts"))[0]
    video = probe(segment, "-select_streams", "v:0", "-show_streams")["streams"][0]
    assert (video.get("color_transfer"), video.get("color_primaries")) == ("bt709", "bt709")
    out_luma, sdr_luma, raw_luma = (mean_luma(p) for p in (segment, sdr, hdr))
    assert abs(out_luma - sdr_luma) < abs(raw_luma - sdr_luma)  # closer than untouched HDR
    assert abs(out_luma - sdr_luma) < 30


def mean_luma(path: Path) -> float:
    import re
    import subprocess

    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-t", "2", "-vf",
         "format=yuv420p,signalstats,metadata=print:key=lavfi.signalstats.YAVG",
         "-f", "null", "-"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    values = [float(v) for v in re.findall(r"YAVG=([0-9.]+)", result.stderr)]
    assert values, result.stderr[-800:]
    return sum(values) / len(values)


@pytest.mark.slow
def test_two_hour_match_numbering_storyboard_and_progress(
    world: World, media, tmp_path: Path
) -> None:
    """A 2-hour input (tiny picture, so it runs in CI): 1,200 segments per
    rendition, 1,200 storyboard tiles in 48 sprites, progress to 100 %."""
    clip = media.made(
        "two_hours.mkv", "-t", "7200", "-f", "lavfi", "-i", "testsrc2=size=64x36:rate=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "12",
    )  # fmt: skip
    upload = world.upload(clip)

    run = world.run_worker(TRANSCODE_PRESET="ultrafast", timeout=1200)

    assert run.returncode == 0, run.stderr
    asset = world.asset(upload.media_id)
    assert asset["transcode_progress"] == 100 and asset["duration_seconds"] == 7200
    assert asset["thumbnail_frame_count"] == 1200
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    report = check_stream(local, clip, audio=False, keyframe_segments=3)
    assert [v["segments"] for v in report.variants] == [1200]
    assert len(list(local.glob("*p_*_01199.ts"))) == 1
    assert len(list((local / "thumbnails").glob("storyboard_*.jpg"))) == 48
    vtt = (local / "thumbnails" / "storyboard.vtt").read_text()
    assert vtt.rstrip().splitlines()[-2] == "01:59:54.000 --> 02:00:00.000"
