"""The FFmpeg command lines, built as argument lists (never through a shell).

One FFmpeg run per part (streaming/parts.py) decodes its span of the upload
once and feeds every rendition, the storyboard tiles and the poster through
`split`s. Keyframes are forced at every segment boundary in every rendition,
so all renditions cut their segments at the same instants and a player can
switch between them cleanly.

Timestamps: every run keeps the upload's own (`-copyts`, less the file's
start time, which is what FFmpeg subtracts by default), so the segments of
all parts form one timeline. The outputs are shifted by `TIMELINE_OFFSET` so
that no timestamp (AAC priming starts 1024 samples early, B-frames decode
before they show) is negative: a muxer would otherwise shift the first part
alone.

Audio and video meet only in a second, copy-only run (`mux_command`). The
encode run writes each rendition's video alone; the mux run reads that file
and the part's slice of the whole-file audio track (`audio_command`), both
as they are, and the HLS muxer interleaves them by decode time. In one run
that both encodes video and copies audio, when FFmpeg reads the audio is up
to its scheduler (it differs between releases, and with every filter branch
that waits: the poster's, the seek margin's trim, the encoder's lookahead),
and the HLS muxer puts each audio packet into whichever segment is open when
it arrives: whole minutes of sound ended up in a part's last segment.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path

from streaming.ladder import Rendition, scaled_size
from streaming.media_probe import MediaInfo, input_guard

HW_DECODERS = {"h264": "h264_nvv4l2dec", "hevc": "hevc_nvv4l2dec"}
POSTER_SHORT_SIDE = 720
AUDIO_RATE = 48000
AAC_FRAME = 1024  # samples per AAC packet
TIMELINE_OFFSET = 10  # seconds added to the audio track's and every output's timestamps
# A part's run seeks this far before its start: to a keyframe before it, and
# with frames enough for the deinterlacer to see the fields before the first
# one kept. A container without an index (MPEG-TS) seeks to a time, not to a
# keyframe: a part that lost its first frames runs again with 4 times the
# margin (streaming/part_encode.py), up to the last.
SEEK_MARGIN = 5.0
MAX_SEEK_MARGIN = 320.0


# HDR (PQ/HLG) to SDR BT.709: linear light, BT.709 primaries, then the Mobius
# curve, which keeps in-range (SDR-bright) pixels as they are and compresses
# only the highlights: a sunny pitch keeps its contrast instead of greying.
TONEMAP = (
    "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)


@dataclass(frozen=True)
class EncodeOptions:
    x264_preset: str
    x264_crf: int
    audio_kbps: int
    segment_seconds: int
    tile_width: int
    can_tonemap: bool = False  # this FFmpeg has zscale and tonemap
    x264_params: str = ""  # the profile's `-x264-params`, if any


def new_encode_tag() -> str:
    """A name part unique to one encode of a video."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class OutputLayout:
    """Where one job's outputs go in its work dir.

    The CDN in front of the bucket may keep a segment, a sprite or the poster
    for ever, so their names carry the encode's `tag`: a later transcode of
    the same video (another ladder, a replaced upload) never writes other
    bytes under a name a viewer's cache already holds. Playlists and the
    storyboard VTT keep fixed names and are cached for a minute only.
    """

    root: Path  # uploaded as `streaming/`
    tag: str = "0"

    @property
    def thumbnails(self) -> Path:
        return self.root / "thumbnails"

    @property
    def tiles(self) -> Path:  # single storyboard frames, assembled into sprites later
        return self.root.parent / "tiles"

    @property
    def poster(self) -> Path:
        return self.thumbnails / f"poster_{self.tag}.jpg"

    @property
    def storyboard_vtt(self) -> Path:
        return self.thumbnails / "storyboard.vtt"

    @property
    def sprite_pattern(self) -> Path:
        return self.thumbnails / f"storyboard_{self.tag}_%03d.jpg"

    @property
    def master(self) -> Path:
        return self.root / "index.m3u8"

    def playlist(self, rendition: Rendition) -> Path:
        return self.root / f"{rendition.name}.m3u8"

    def segment_pattern(self, rendition: Rendition) -> Path:
        return self.root / f"{rendition.name}_{self.tag}_%05d.ts"

    def first_segment(self, rendition: Rendition) -> Path:
        return self.root / f"{rendition.name}_{self.tag}_00000.ts"

    def part_folder(self, k: int) -> Path:  # a part's own playlists and tiles
        return self.root.parent / "parts" / f"{k:05d}"

    @property
    def audio(self) -> Path:  # the audio track's slices
        return self.root.parent / "audio"


@dataclass(frozen=True)
class PartSpan:
    """What one part's FFmpeg run reads and writes (streaming/parts.py)."""

    start: float | None  # seconds on FFmpeg's timeline; None: from the beginning
    end: float | None  # None: to the end
    first_segment: int  # the number of its first segment
    file_start: float  # the upload's start time, which that timeline begins at
    audio: Path | None  # its slice of the audio track; None: the upload has no audio
    folder: Path  # its playlists, its renditions' video before the mux, its tiles
    poster: bool  # the poster's frame is in it
    margin: float = SEEK_MARGIN  # how far before its start it seeks

    def video(self, rendition: Rendition) -> Path:
        """A rendition's video as the encode run writes it (no audio)."""
        return self.folder / f"{rendition.name}.nut"

    def playlist(self, rendition: Rendition) -> Path:
        return self.folder / f"{rendition.name}.m3u8"


def pick_decoder(info: MediaInfo, available: frozenset[str], allow_hw: bool) -> str | None:
    """The Jetson hardware decoder for this input when FFmpeg has it, else None.

    NVDEC on the Orin takes 8-bit 4:2:0 H.264 and 8/10-bit 4:2:0 HEVC; H.264
    High 10 or 4:2:2 (and anything else) goes to the software decoder."""
    name = HW_DECODERS.get(info.video_codec)
    if not allow_hw or name not in available:
        return None
    if info.video_codec == "h264" and not info.eight_bit_420:
        return None
    if info.video_codec == "hevc" and info.pix_fmt not in ("yuv420p", "yuvj420p", "yuv420p10le"):
        return None
    return name


def pre_filters(info: MediaInfo, opts: EncodeOptions) -> list[str]:
    """What every output needs before the split: deinterlace, SDR, frame rate cap."""
    chain = []
    if info.interlaced:
        chain.append("bwdif=mode=send_frame:parity=auto:deint=all")
    if info.hdr and opts.can_tonemap:
        chain.append(TONEMAP)
    if info.fps > 60.5:
        chain.append("fps=60")
    return chain


def poster_time(duration: float) -> float:
    """A frame from the match itself, not the black first frame: 10 % in, at most 10 min."""
    return round(min(duration * 0.1, 600.0), 3)


def _trim(part: PartSpan) -> str:
    bounds = [f"{name}={value}" for name, value in (("start", part.start), ("end", part.end))
              if value is not None]  # fmt: skip
    return f"trim={':'.join(bounds)}," if bounds else ""


def _filter_graph(
    info: MediaInfo, renditions: list[Rendition], opts: EncodeOptions, part: PartSpan
) -> str:
    """A cascade: the source is scaled once to the top rendition, and each
    smaller rendition from the one above it, so the big source frame is
    resampled once however long the ladder is (`area` averages the pixels a
    downscale drops). The storyboard tiles and the poster come from the top
    rendition; the poster branch lets one frame through and then ends, so it
    costs one scale, not one per frame."""
    # (the trim after the deinterlacer, tone mapping and frame-rate cap, which
    # then see the frames before the part as in one run)
    pre = "".join(f + "," for f in pre_filters(info, opts)) + _trim(part)
    last = len(renditions) - 1
    graph = []
    for i, r in enumerate(renditions):
        source = f"[0:{info.video_stream}]{pre}" if i == 0 else f"[d{i - 1}]"
        outs = [f"[v{i}]"] + ([f"[d{i}]"] if i < last else [])
        outs += (["[tiles]"] + (["[poster]"] if part.poster else [])) if i == 0 else []
        split = f",split={len(outs)}" if len(outs) > 1 else ""
        graph.append(
            f"{source}scale={r.width}:{r.height}:flags=area,setsar=1,format=yuv420p"
            f"{split}{''.join(outs)}"
        )
    graph.append(
        f"[tiles]fps=1/{opts.segment_seconds}:round=down:eof_action=pass,"
        f"scale={opts.tile_width}:-2:flags=area,format=yuvj420p[vtiles]"
    )
    if not part.poster:
        return ";".join(graph)
    top = renditions[0]
    pw, ph = scaled_size(top.width, top.height, min(POSTER_SHORT_SIDE, top.short_side))
    graph.append(
        f"[poster]trim=start={poster_time(info.duration)},setpts=PTS-STARTPTS,trim=end_frame=1,"
        f"scale={pw}:{ph}:flags=area,format=yuvj420p[vposter]"
    )
    return ";".join(graph)


def _rendition_output(
    index: int, r: Rendition, info: MediaInfo, opts: EncodeOptions, part: PartSpan
) -> list[str]:
    """The output options of one rendition's video: x264 on the shared
    keyframe grid (counted from the part's first frame, which is on the
    grid), into a file of its own for the mux run."""
    seg = opts.segment_seconds
    command = [
        "-map", f"[v{index}]",
        "-c:v", "libx264", "-preset", opts.x264_preset, "-crf", str(opts.x264_crf),
        "-maxrate", f"{r.video_kbps}k", "-bufsize", f"{2 * r.video_kbps}k",
        "-profile:v", "high", "-force_key_frames", f"expr:gte(t,n_forced*{seg})",
    ]  # fmt: skip
    if opts.x264_params:
        command += ["-x264-params", opts.x264_params]
    if info.hdr and opts.can_tonemap:
        command += ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
    return command + [
        "-max_muxing_queue_size", "4096", "-output_ts_offset", str(TIMELINE_OFFSET),
        "-f", "nut", str(part.video(r)),
    ]  # fmt: skip


def _inputs(source: Path | str, decoder: str | None, part: PartSpan) -> list[str]:
    """The upload from a keyframe before the part (the trim cuts exactly), on
    FFmpeg's usual timeline."""
    video = ["-c:v", decoder] if decoder else []
    if part.start is not None:
        video += ["-noaccurate_seek", "-ss", f"{max(0.0, part.start - part.margin)}"]
    if part.file_start:
        video += ["-itsoffset", f"{-part.file_start}"]
    return video + input_guard(source)


def transcode_command(
    ffmpeg: str,
    source: Path | str,
    layout: OutputLayout,
    info: MediaInfo,
    renditions: list[Rendition],
    opts: EncodeOptions,
    decoder: str | None,
    part: PartSpan,
) -> list[str]:
    """The one FFmpeg run that makes a part's video in every rendition, its
    tiles and (in the part that holds its frame) the poster."""
    command = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", "-copyts"]
    command += _inputs(source, decoder, part)
    command += ["-filter_complex", _filter_graph(info, renditions, opts, part)]
    for i, r in enumerate(renditions):
        command += _rendition_output(i, r, info, opts, part)
    # Tiles are named by their time (one per segment interval), whichever part made them.
    command += [
        "-map", "[vtiles]", "-c:v", "mjpeg", "-q:v", "5", "-f", "image2",
        "-frame_pts", "1", str(part.folder / "tiles" / "tile_%05d.jpg"),
    ]  # fmt: skip
    if part.poster:
        command += [
            "-map", "[vposter]", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3",
            "-f", "image2", "-update", "1", str(layout.poster),
        ]  # fmt: skip
    return command + ["-progress", "pipe:1", "-nostats"]


def mux_command(
    ffmpeg: str, part: PartSpan, rendition: Rendition, opts: EncodeOptions, layout: OutputLayout
) -> list[str]:
    """A rendition's part as HLS: its video and the part's audio slice, both
    copied, interleaved by the muxer by decode time, so that each segment
    holds the sound of its own span. The segments stay in the part's folder
    until the part is checked (streaming/hls_check.py)."""
    inputs = [part.video(rendition)] + ([part.audio] if part.audio is not None else [])
    command = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", "-copyts"]
    for path in inputs:
        command += ["-protocol_whitelist", "file", "-f", "nut", "-i", f"file:{path}"]
    command += ["-map", "0:v:0"] + (["-map", "1:a:0"] if part.audio is not None else [])
    # (`-max_interleave_delta 0`: the muxer holds each packet until every
    # stream has one, however far ahead FFmpeg's scheduler reads one input;
    # by default it lets a stream through 10 s ahead of one that has none)
    return command + [
        "-c", "copy", "-max_muxing_queue_size", "4096", "-max_interleave_delta", "0",
        "-f", "hls", "-hls_time", str(opts.segment_seconds), "-hls_playlist_type", "vod",
        "-hls_list_size", "0", "-hls_flags", "independent_segments+temp_file",
        "-hls_segment_type", "mpegts", "-start_number", str(part.first_segment),
        "-hls_segment_filename", str(part.folder / layout.segment_pattern(rendition).name),
        str(part.playlist(rendition)), "-progress", "pipe:1", "-nostats",
    ]  # fmt: skip


def audio_command(
    ffmpeg: str, source: Path | str, opts: EncodeOptions, cuts: list[float], folder: Path,
    duration: float,
) -> list[str]:  # fmt: skip
    """The upload's audio encoded once for the whole match, cut at the parts'
    starts into one file per part (each AAC packet in the part it begins in),
    with the timestamps of the whole; each completed slice is listed in
    `slices.csv`. Where the upload has no sound (before its audio starts, in
    a gap, after it ends) the track holds silence, from 0 to `duration`: every
    segment carries audio for all of its span, as players expect of a stream
    that announces audio."""
    samples = int(round(duration * AUDIO_RATE))
    chain = (f"aresample={AUDIO_RATE}:async=1:first_pts=0,"
             f"apad=whole_len={samples},atrim=end_sample={samples}")  # fmt: skip
    command = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", *input_guard(source)]
    command += [
        "-map", "0:a:0", "-vn", "-af", chain, "-c:a", "aac", "-b:a", f"{opts.audio_kbps}k",
        "-ar", str(AUDIO_RATE), "-ac", "2", "-max_muxing_queue_size", "4096",
        "-output_ts_offset", str(TIMELINE_OFFSET), "-f", "segment", "-segment_format", "nut",
        "-reset_timestamps", "0", "-segment_list", str(folder / "slices.csv"),
        "-segment_list_type", "csv",
    ]  # fmt: skip
    if cuts:
        # Cut by packet count, not by time: the segment muxer compares its
        # times with the timestamps as they are in FFmpeg 4.x-5.x and with
        # their distance from the first one in 7.x.
        frames = ",".join(str(first_packet_at(c)) for c in cuts)
        command += ["-segment_frames", frames]
    else:  # one slice (the muxer would otherwise cut every 2 s)
        command += ["-segment_time", "1000000"]
    return command + [str(folder / "slice_%05d.nut"), "-progress", "pipe:1", "-nostats"]


def first_packet_at(seconds: float) -> int:
    """The index of the first AAC packet of the track that begins at or after
    `seconds`: packet i begins at (i - 1) × 1024 samples (the encoder's
    priming packet comes first, one packet early), and the track's samples
    are continuous from 0 (`aresample=async=1:first_pts=0`)."""
    return math.ceil(seconds * AUDIO_RATE / AAC_FRAME - 1e-9) + 1


def sprite_commands(
    ffmpeg: str, layout: OutputLayout, tiles: int, columns: int, rows: int
) -> list[list[str]]:
    """Assemble the storyboard tiles (our own small JPEGs) into sprites.

    The web app derives a sprite's size from the largest `x+w`, `y+h` in the
    VTT, so the last sprite is made exactly as large as the tiles it holds
    (no empty rows or columns of padding that it would squash into view).
    """
    per_sprite = columns * rows
    full, rest = divmod(tiles, per_sprite)

    def run(first_tile: int, grid: str, sprites: int, first_sprite: int) -> list[str]:
        return [
            ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y",
            "-protocol_whitelist", "file", "-f", "image2", "-framerate", "1",
            "-start_number", str(first_tile), "-i", str(layout.tiles / "tile_%05d.jpg"),
            "-vf", f"tile={grid}", "-frames:v", str(sprites), "-q:v", "5", "-f", "image2",
            "-start_number", str(first_sprite), str(layout.sprite_pattern),
        ]  # fmt: skip

    commands = []
    if full:
        commands.append(run(0, f"{columns}x{rows}", full, 0))
    if rest:
        grid = f"{min(rest, columns)}x{-(-rest // columns)}"
        commands.append(run(full * per_sprite, grid, 1, full))
    return commands
