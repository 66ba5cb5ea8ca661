"""Parts on the segment grid, their records (from storage: untrusted), the
joined playlist and a part's FFmpeg command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streaming.ffmpeg_command import (
    EncodeOptions,
    OutputLayout,
    PartSpan,
    audio_command,
    mux_command,
    transcode_command,
)
from streaming.hls_output import measure_variant, media_playlist, read_media_playlist
from streaming.ladder import Rendition
from streaming.media_probe import MediaInfo
from streaming.parts import PartPlan, PartRecord, fingerprint
from utils.config import load_transcoder_settings

FP = fingerprint({"size": 1, "etag": "e"}, {"preset": "ultrafast"})


def plan(duration: float, length: int = 300) -> PartPlan:
    return PartPlan(FP, "ab12cd34", 0.0, length, 6, duration)


def test_parts_are_whole_segments_and_cover_the_match() -> None:
    p = plan(7200.0)
    assert (p.count, p.segments_per_part) == (24, 50)
    assert p.start(0) is None and p.end(23) is None
    assert p.end(0) == p.start(1) == pytest.approx(299.999)  # a frame on the grid opens a part
    assert [p.first_segment(k) for k in (0, 1, 23)] == [0, 50, 1150]
    assert sum(p.seconds(k) for k in range(p.count)) == pytest.approx(7200.0, abs=0.01)
    assert p.holds(0, 299.0) and p.holds(1, 300.0) and p.holds(23, 7199.0)
    assert plan(20.0).count == 1 and plan(300.0).count == 1 and plan(300.5).count == 2


def test_part_length_is_rounded_to_whole_segments(monkeypatch) -> None:
    base = {
        "SUPABASE_URL": "http://127.0.0.1:1", "SUPABASE_SERVICE_ROLE_KEY": "k" * 20,
        "WASABI_ENDPOINT": "http://127.0.0.1:2", "WASABI_KEY": "a", "WASABI_SECRET": "b",
        "SQS_QUEUE_URL": "http://127.0.0.1:3/q", "BUCKET_NAME": "b",
    }  # fmt: skip
    for given, segment, want in (("300", "6", 300), ("100", "6", 102), ("2", "6", 6)):
        env = {**base, "TRANSCODE_PART_SECONDS": given, "HLS_SEGMENT_SECONDS": segment}
        assert load_transcoder_settings(env).part_seconds == want


def record(**change: object) -> bytes:
    raw = {
        "version": 2, "part": 3, "fingerprint": FP, "tag": "ab12cd34",
        "segments": {"720p": [["720p_ab12cd34_00150.ts", 6.006, 812345]]},
        "streams": {"720p": [{"codec_type": "video", "codec_name": "h264", "evil": {"x": 1}}]},
        "archive": 2048, "edges": {"720p": [911.4, 911.32, 917.406, 0.033367]},
    }  # fmt: skip
    return json.dumps({**raw, **change}).encode()


def test_a_record_round_trips_and_keeps_only_known_stream_fields() -> None:
    parsed = PartRecord.from_json(record(), ["720p"])
    assert parsed.segments["720p"] == [("720p_ab12cd34_00150.ts", 6.006, 812345)]
    assert parsed.streams["720p"] == [{"codec_type": "video", "codec_name": "h264"}]
    assert PartRecord.from_json(parsed.to_json(), ["720p"]) == parsed


@pytest.mark.parametrize(
    "change",
    [
        {"version": 1},
        {"part": -1},
        {"part": "3"},
        {"fingerprint": "../../x"},
        {"tag": "AB/../"},
        {"segments": {"1080p": [["1080p_ab12cd34_00150.ts", 6.0, 1]]}},  # another ladder
        {"segments": {"720p": [["../../other/720p_ab12cd34_00150.ts", 6.0, 1]]}},
        {"segments": {"720p": [["720p_ffffffff_00150.ts", 6.0, 1]]}},  # another encode
        {"segments": {"720p": [["720p_ab12cd34_00150.ts", -6.0, 1]]}},
        {"segments": {"720p": [["720p_ab12cd34_00150.ts", 6.0, 0]]}},
        {"segments": {"720p": []}},
        {"archive": 0},
        {"edges": {}},
        {"edges": {"720p": [911.4, 911.32, 911.0, 0.03]}},  # ends before it begins
        {"edges": {"720p": [911.4, 911.32, "917", 0.03]}},
        {"edges": {"720p": [911.4, 911.32, float("nan"), 0.03]}},
    ],
)
def test_a_bad_record_is_refused(change: dict) -> None:
    with pytest.raises(ValueError):
        PartRecord.from_json(record(**change), ["720p"])


def test_the_joined_playlist_follows_the_spec_target_rule(tmp_path: Path) -> None:
    segments = [("a_00000.ts", 6.006, 1000), ("a_00001.ts", 6.4, 3000), ("a_00002.ts", 1.5, 10)]
    text = media_playlist(segments)
    assert "#EXT-X-TARGETDURATION:6" in text and text.endswith("#EXT-X-ENDLIST\n")
    (tmp_path / "a.m3u8").write_text(text)
    assert read_media_playlist(tmp_path / "a.m3u8") == [(s, u) for u, s, _ in segments]
    assert "#EXT-X-TARGETDURATION:7" in media_playlist([("b.ts", 6.5, 1)])
    stats = measure_variant(Rendition("a", 640, 360, 800), segments, [])
    assert stats.peak_bps == 3750  # 3000 bytes in 6.4 s; the short last segment is not the peak


def _command(span: PartSpan) -> list[str]:
    info = MediaInfo(600.0, 1920, 1080, 0, 30.0, "h264", "yuv420p", True, "mov,mp4")
    opts = EncodeOptions("ultrafast", 23, 128, 6, 320)
    layout = OutputLayout(Path("/w/job/out"), "ab12cd34")
    renditions = [Rendition("1080p", 1920, 1080, 1900), Rendition("540p", 960, 540, 600)]
    return transcode_command("ffmpeg", Path("/w/job/source"), layout, info, renditions, opts,
                             None, span)  # fmt: skip


def test_a_part_run_encodes_its_span_and_only_video() -> None:
    span = PartSpan(299.999, 599.999, 50, 0.0, Path("/w/job/audio/slice_00001.nut"),
                    Path("/w/job/parts/00001"), poster=False)  # fmt: skip
    command = _command(span)
    assert command[command.index("-ss") + 1] == "294.999"  # the margin before it
    assert "-copyts" in command and "-noaccurate_seek" in command
    graph = command[command.index("-filter_complex") + 1]
    assert "trim=start=299.999:end=599.999" in graph and "[vposter]" not in graph
    # Audio meets video only in the mux run: no audio input, map or codec here.
    assert "slice_00001.nut" not in " ".join(command) and "-c:a" not in command
    assert command.count("-i") == 1 and "1:a:0" not in command
    assert "/w/job/parts/00001/1080p.nut" in command and "/w/job/parts/00001/540p.nut" in command
    assert command[command.index("-frame_pts") + 1] == "1"  # tiles named by their time


def test_the_mux_run_copies_video_and_the_audio_slice_into_the_part_folder() -> None:
    span = PartSpan(299.999, 599.999, 50, 0.0, Path("/w/job/audio/slice_00001.nut"),
                    Path("/w/job/parts/00001"), poster=False)  # fmt: skip
    opts = EncodeOptions("ultrafast", 23, 128, 6, 320)
    layout = OutputLayout(Path("/w/job/out"), "ab12cd34")
    command = mux_command("ffmpeg", span, Rendition("540p", 960, 540, 600), opts, layout)
    assert command[command.index("-c") + 1] == "copy" and "-filter_complex" not in command
    assert "file:/w/job/parts/00001/540p.nut" in command
    assert "file:/w/job/audio/slice_00001.nut" in command
    assert command.count("file") == 2  # each input through the file protocol only
    assert command[command.index("-start_number") + 1] == "50"
    pattern = command[command.index("-hls_segment_filename") + 1]
    assert pattern == "/w/job/parts/00001/540p_ab12cd34_%05d.ts"  # checked before it goes up
    silent = PartSpan(None, 300.0, 0, 0.0, None, Path("/w/p"), poster=True)
    command = mux_command("ffmpeg", silent, Rendition("540p", 960, 540, 600), opts, layout)
    assert "-map" in command and "1:a:0" not in command and command.count("-i") == 1


def test_the_audio_track_is_padded_with_silence_to_the_whole_match() -> None:
    opts = EncodeOptions("ultrafast", 23, 128, 6, 320)
    command = audio_command("ffmpeg", Path("/w/src"), opts, [299.999], Path("/w/a"), 612.5)
    chain = command[command.index("-af") + 1]
    assert "first_pts=0" in chain and "apad=whole_len=29400000" in chain
    assert "atrim=end_sample=29400000" in chain


def test_the_audio_track_is_cut_by_packet_count_the_same_on_every_release() -> None:
    """Packet i begins at (i - 1) x 1024 / 48000 s (the priming packet first):
    a part's slice opens with the first packet that begins in it."""
    opts = EncodeOptions("ultrafast", 23, 128, 6, 320)
    command = audio_command("ffmpeg", Path("/w/src"), opts, [5.999, 17.999, 300.0], Path("/w/a"),
                            612.5)  # fmt: skip
    assert command[command.index("-segment_frames") + 1] == "283,845,14064"
    assert "-segment_times" not in command
    for n, cut in zip((283, 845, 14064), (5.999, 17.999, 300.0), strict=True):
        assert (n - 1) * 1024 / 48000 >= cut > (n - 2) * 1024 / 48000
