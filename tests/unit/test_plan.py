"""Pure decisions: message parsing, ladder, retry timing, storyboard, CODECS."""

from __future__ import annotations

import json
import uuid

import pytest

from streaming.errors import JobError
from streaming.ffmpeg_command import pick_decoder
from streaming.hls_output import Storyboard, codecs_string
from streaming.ladder import choose_renditions
from streaming.media_probe import MediaInfo, parse_probe
from streaming.messages import parse_message
from streaming.retry_policy import retry_backoff
from utils.config import parse_ladder

LADDER = parse_ladder("1080:5000,720:2800,480:1400,360:800")


def test_message_extra_keys_ignored_and_type_optional() -> None:
    ids = {k: str(uuid.uuid4()) for k in ("job_id", "media_id", "org_id")}
    request = parse_message(json.dumps({**ids, "extra": 1}))
    assert request.job_id == ids["job_id"]
    upper = parse_message(json.dumps({k: v.upper() for k, v in ids.items()}))
    assert upper.media_id == ids["media_id"]  # canonical lower case


def test_message_of_another_type_is_refused() -> None:
    ids = {k: str(uuid.uuid4()) for k in ("job_id", "media_id", "org_id")}
    with pytest.raises(JobError, match="type"):
        parse_message(json.dumps({**ids, "type": "cleanup"}))


@pytest.mark.parametrize(
    "size, expected",
    [
        ((1920, 1080), [(1920, 1080), (1280, 720), (854, 480), (640, 360)]),
        ((1080, 1920), [(1080, 1920), (720, 1280), (480, 854), (360, 640)]),
        ((3840, 2160), [(1920, 1080), (1280, 720), (854, 480), (640, 360)]),
        ((1280, 720), [(1280, 720), (854, 480), (640, 360)]),
        ((320, 240), [(320, 240)]),
        ((321, 241), [(320, 240)]),
    ],
)
def test_ladder_never_upscales_and_follows_the_short_side(size, expected) -> None:
    renditions = choose_renditions(*size, LADDER)
    assert [(r.width, r.height) for r in renditions] == expected
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in renditions)


def test_source_between_rungs_keeps_its_own_size() -> None:
    ladder = parse_ladder("1080:2000,540:700")
    sizes = [(r.width, r.height, r.video_kbps) for r in choose_renditions(1280, 720, ladder)]
    assert sizes == [(1280, 720, 888), (960, 540, 700)]
    assert [r.height for r in choose_renditions(3840, 2160, ladder)] == [1080, 540]
    assert [r.height for r in choose_renditions(1024, 576, ladder)] == [540]  # within 15 %


def test_backoff_grows_and_is_capped() -> None:
    assert [retry_backoff(n, 60) for n in (1, 2, 3, 4, 10)] == [60, 120, 240, 480, 900]


def _info(codec: str, pix_fmt: str = "yuv420p") -> MediaInfo:
    return MediaInfo(10.0, 1920, 1080, 0, 25.0, codec, pix_fmt, True, "mov")


def test_hardware_decoder_only_for_what_nvdec_takes() -> None:
    jetson = frozenset({"h264_nvv4l2dec", "hevc_nvv4l2dec"})
    assert pick_decoder(_info("h264"), jetson, True) == "h264_nvv4l2dec"
    assert pick_decoder(_info("hevc"), jetson, True) == "hevc_nvv4l2dec"
    assert pick_decoder(_info("hevc", "yuv420p10le"), jetson, True) == "hevc_nvv4l2dec"
    assert pick_decoder(_info("h264", "yuv420p10le"), jetson, True) is None  # High 10
    assert pick_decoder(_info("h264", "yuv422p"), jetson, True) is None  # 4:2:2
    assert pick_decoder(_info("vp9"), jetson, True) is None
    assert pick_decoder(_info("h264"), frozenset(), True) is None
    assert pick_decoder(_info("h264"), jetson, False) is None


def test_probe_rejects_what_is_not_a_video() -> None:
    with pytest.raises(JobError) as no_video:
        parse_probe({"streams": [{"codec_type": "audio"}], "format": {"duration": "5"}})
    assert no_video.value.code == "INPUT_UNSUPPORTED"
    with pytest.raises(JobError) as huge:
        parse_probe(
            {
                "streams": [{"codec_type": "video", "width": 20000, "height": 20000}],
                "format": {"duration": "5"},
            }  # fmt: skip
        )
    assert huge.value.code == "INPUT_TOO_LARGE"
    rotated = parse_probe(
        {
            "streams": [
                {
                    "codec_type": "video",
                    "width": 1920,
                    "height": 1080,
                    "side_data_list": [{"rotation": -90}],
                }
            ],
            "format": {"duration": "5"},
        }  # fmt: skip
    )
    assert (rotated.width, rotated.height) == (1080, 1920)


def test_storyboard_vtt_is_contiguous_and_inside_the_sprites() -> None:
    board = Storyboard(tiles=27, interval=6.0, tile_width=320, tile_height=180, tag="a1b2")
    text = board.vtt(160.5)
    cues = [line for line in text.splitlines() if "-->" in line]
    targets = [line for line in text.splitlines() if "#xywh=" in line]
    assert len(cues) == 27 and board.sprites == 2
    assert cues[0].startswith("00:00:00.000 --> 00:00:06.000")
    assert cues[-1] == "00:02:36.000 --> 00:02:40.500"
    assert targets[24] == "storyboard_a1b2_000.jpg#xywh=1280,720,320,180"
    assert targets[25] == "storyboard_a1b2_001.jpg#xywh=0,0,320,180"


def test_codecs_string_from_real_stream_fields() -> None:
    streams = [
        {"codec_name": "h264", "profile": "High", "level": 40},
        {"codec_name": "aac", "profile": "LC"},
    ]
    assert codecs_string(streams) == "avc1.640028,mp4a.40.2"
