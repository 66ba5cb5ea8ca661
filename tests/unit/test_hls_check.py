"""The publish gate's rules, on segments described packet by packet: what
each refuses, and the decode-time cut it accepts."""

from __future__ import annotations

import pytest

from streaming.hls_check import (
    Edges,
    Packet,
    StreamInvalid,
    check_join,
    check_playlist,
    check_segments,
    place_packets,
    span_of,
)
from streaming.hls_output import media_playlist

FRAME = 0.1  # 10 fps, the long test clip's rate
AAC = 1024 / 48000
LAG = 2 * FRAME  # x264's B-frames: a keyframe decodes two frames before it shows


def segment(start: float, seconds: float = 6.0, audio: tuple[float, float] | None = None):
    """A segment as the mux run writes it: frames from `start`, the audio
    of [decode time of its first frame, decode time of the next one)."""
    frames = round(seconds / FRAME)
    video = [Packet(True, start + i * FRAME, start + i * FRAME - LAG, FRAME, i == 0)
             for i in range(frames)]  # fmt: skip
    begin, end = audio if audio is not None else (start - LAG, start + seconds - LAG)
    sound, t = [], begin
    while t < end - 1e-9:
        sound.append(Packet(False, t, t, AAC, True))
        t += AAC
    return video + sound


def spans(*segments: list[Packet]):
    return [span_of(f"s{i}.ts", packets) for i, packets in enumerate(segments)]


def listed(n: int, seconds: float = 6.0):
    return [(f"s{i}.ts", seconds) for i in range(n)]


def test_segments_cut_at_decode_time_pass_and_give_the_parts_edges() -> None:
    last = segment(22.0, audio=(22.0 - LAG, 28.0))  # (the slice ends where the next part begins)
    found = spans(segment(10.0, audio=(10.0, 16.0 - LAG)), segment(16.0), last)
    edges = check_segments(listed(3), found, has_audio=True, stream_starts=True)
    assert edges.to_list() == [10.0, 9.8, 28.0, 0.1]


def test_a_parts_audio_all_in_its_last_segment_is_refused() -> None:
    """What one FFmpeg run that encodes video and copies audio made: no sound
    until the last segment, which holds the whole part's."""
    silent = [p for p in segment(16.0) if p.video]
    found = spans(segment(10.0, audio=(10.0, 10.02)), silent, segment(22.0, audio=(10.02, 28.0)))
    with pytest.raises(StreamInvalid, match="ends at|carries no audio"):
        check_segments(listed(3), found, has_audio=True, stream_starts=True)


def test_audio_one_segment_late_is_refused() -> None:
    found = spans(segment(10.0, audio=(10.0, 16.0 - LAG)), segment(16.0, audio=(10.0, 16.0)))
    with pytest.raises(StreamInvalid, match="audio starts at 10.000s"):
        check_segments(listed(2), found, has_audio=True, stream_ends=True)


def test_a_segment_without_its_audio_or_with_unasked_audio_is_refused() -> None:
    mute = [p for p in segment(16.0) if p.video]
    with pytest.raises(StreamInvalid, match="carries no audio"):
        check_segments(listed(2), spans(segment(10.0), mute), has_audio=True, stream_starts=True)
    with pytest.raises(StreamInvalid, match="does not have"):
        check_segments(listed(1), spans(segment(10.0)), has_audio=False, stream_ends=True)


def test_a_wrong_extinf_is_refused() -> None:
    found = spans(segment(10.0, audio=(10.0, 16.0 - LAG)), segment(16.0))
    with pytest.raises(StreamInvalid, match="EXTINF 4.200s"):
        check_segments([("s0.ts", 4.2), ("s1.ts", 6.0)], found, has_audio=True, stream_ends=True)


def test_a_gap_or_overlap_inside_a_part_is_refused() -> None:
    found = spans(segment(10.0, audio=(10.0, 16.0 - LAG)), segment(16.5, audio=(16.0, 22.5)))
    with pytest.raises(StreamInvalid, match="a gap of 0.500s"):
        check_segments([("s0.ts", 6.5), ("s1.ts", 6.0)], found, has_audio=True, stream_ends=True)


def test_a_segment_that_does_not_open_on_a_keyframe_is_refused() -> None:
    packets = [Packet(p.video, p.pts, p.dts, p.duration, False) for p in segment(10.0)]
    with pytest.raises(StreamInvalid, match="keyframe"):
        span_of("s0.ts", packets)
    with pytest.raises(StreamInvalid, match="no video"):
        span_of("s0.ts", [p for p in segment(10.0) if not p.video])


def test_a_missing_segment_is_refused() -> None:
    with pytest.raises(StreamInvalid, match="differ"):
        check_segments(listed(3), spans(segment(10.0), segment(16.0)), has_audio=True)


def test_a_timestamp_gap_at_a_join_is_refused() -> None:
    before = Edges(10.0, 9.8, 310.0, FRAME)
    check_join("part 0", before, Edges(310.0, 309.8, 610.0, FRAME))
    check_join("part 0", before, Edges(310.1, 309.9, 610.0, FRAME))  # one frame: a rounding
    with pytest.raises(StreamInvalid, match="a gap of 0.500s"):
        check_join("part 0", before, Edges(310.5, 310.3, 610.0, FRAME))
    with pytest.raises(StreamInvalid, match="an overlap"):
        check_join("part 0", before, Edges(309.0, 308.8, 610.0, FRAME))


def test_the_upload_sound_may_begin_before_its_picture_in_the_first_segment_only() -> None:
    first = segment(12.0, audio=(10.0, 18.0 - LAG))  # (a video that starts 2 s late)
    check_segments([("s0.ts", 6.0)], spans(first), has_audio=True, stream_starts=True,
                   stream_ends=True)  # fmt: skip
    with pytest.raises(StreamInvalid):
        check_segments([("s0.ts", 6.0)], spans(first), has_audio=True, stream_ends=True)


def test_packets_are_placed_in_their_segment_by_byte_position() -> None:
    text = "\n".join([
        "codec_type=video|pts_time=10.0|dts_time=9.8|duration_time=0.1|pos=376|flags=K_",
        "codec_type=audio|pts_time=9.98|dts_time=9.98|duration_time=0.021333|pos=564|flags=K_",
        "codec_type=audio|pts_time=10.0|dts_time=10.0|duration_time=0.021333|pos=N/A|flags=K_",
        "",
        "codec_type=video|pts_time=16.0|dts_time=15.8|duration_time=0.1|pos=1128|flags=K_",
    ])  # fmt: skip
    placed = place_packets(text, [1000, 1000])
    assert [len(p) for p in placed] == [3, 1] and placed[1][0].key
    with pytest.raises(StreamInvalid):
        place_packets("codec_type=audio|pts_time=N/A|dts_time=N/A|pos=10|flags=K_", [100])
    with pytest.raises(StreamInvalid, match="beyond"):
        place_packets("codec_type=video|pts_time=1|dts_time=1|pos=500|flags=K_", [100])


def test_the_joined_playlist_keeps_the_target_rule() -> None:
    check_playlist("a.m3u8", media_playlist([("a.ts", 6.4, 1), ("b.ts", 6.0, 1)]))
    with pytest.raises(StreamInvalid, match="over the target"):
        check_playlist("a.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:7.2,\na.ts\n")
