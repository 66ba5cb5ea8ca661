"""What the tests share: the world a test sees (clients, factories, the
worker's environment), the real daemon as a subprocess and its events, the
production timing scaled down, and what a player needs from a finished stream.

The fixtures that build these are in `conftest.py`; the local stack itself
is `devstack/`. No test module imports another.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import m3u8
import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.clips import tone, video_source
from devstack.stack import LocalStack, insert_upload
from streaming.hls_check import StreamInvalid, check_segments, read_packets, span_of
from streaming.hls_output import codecs_string
from streaming.services import Services
from streaming.worker import run_loop
from utils.config import load_transcoder_settings
from utils.observability import EventLog
from utils.sqs_queue import WorkQueue
from utils.storage import Storage
from utils.supabase_db import Database

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "streaming" / "stream_worker_sqs.py"
BUCKET = "rugbycodex-media"
QUEUE = "rugbycodex-transcode-jobs"


def require(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI is missing a required component: {reason}")
        pytest.skip(reason)


@dataclass
class World:
    """One test's view of the stack: clients, the env for a worker, helpers."""

    stack: LocalStack
    env: dict[str, str]
    work_dir: Path
    s3: Any
    sqs: Any
    queue_url: str
    dlq_url: str

    # --- database ---------------------------------------------------------

    def sql(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.stack.postgres.dsn, autocommit=True, row_factory=dict_row) as c:
            cursor = c.execute(statement, args)
            return cursor.fetchall() if cursor.description else []

    def backdate(self, job_id: str, hours: float) -> None:
        """Make a job look untouched for `hours`."""
        with psycopg.connect(self.stack.postgres.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE jobs SET updated_at = now() - make_interval(secs => %s) WHERE id = %s",
                (hours * 3600, job_id),
            )

    def job(self, job_id: str) -> dict[str, Any]:
        return self.sql("SELECT * FROM jobs WHERE id = %s", job_id)[0]

    def asset(self, media_id: str) -> dict[str, Any]:
        return self.sql("SELECT * FROM media_assets WHERE id = %s", media_id)[0]

    # --- uploads, jobs and messages ----------------------------------------

    def upload(
        self,
        clip: Path | None,
        *,
        org_id: str | None = None,
        file_name: str = "match.mp4",
        storage_path: str | None = None,
        state: str = "queued",
        attempt: int = 1,
        send: bool = True,
        bucket: str = BUCKET,
    ) -> Upload:
        org_id = org_id or str(uuid.uuid4())
        media_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
        key = storage_path or f"orgs/{org_id}/uploads/{media_id}/raw/{file_name}"
        size = clip.stat().st_size if clip else 0
        if clip is not None:
            self.s3.upload_file(str(clip), BUCKET, key)
        insert_upload(
            self.stack.postgres.dsn, org_id=org_id, media_id=media_id, job_id=job_id, key=key,
            bucket=bucket, size=size, file_name=file_name, state=state, attempt=attempt,
        )  # fmt: skip
        made = Upload(job_id, media_id, org_id, key)
        if send:
            self.send(made.message())
        return made

    def send(self, body: dict[str, Any] | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, hidden) messages in the transcode queue (or `url`):
        hidden counts those in flight and those sent with a delay."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        hidden = ("ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            sum(int(attrs.get(name, 0)) for name in hidden),
        )

    def work_dir_empty(self) -> bool:
        """No job files left (the folder may not even exist yet)."""
        return not self.work_dir.exists() or not any(self.work_dir.iterdir())

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def download_prefix(self, prefix: str, dest: Path) -> Path:
        for key in self.keys(prefix):
            target = dest / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(BUCKET, key, str(target))
        return dest

    # --- the worker ---------------------------------------------------------

    def run_worker(
        self, *args: str, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess:
        """The real daemon as a subprocess (`--once` unless told otherwise)."""
        return subprocess.run(
            [sys.executable, str(WORKER), *(args or ("--once",))],
            env={**self.base_env(), **self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def services(
        self, stop: threading.Event | None = None, decoders: frozenset[str] = frozenset(),
        **overrides: str,
    ) -> Services:  # fmt: skip
        """The worker's real clients, built in this process from the test's env."""
        settings = load_transcoder_settings({**self.env, **overrides})
        return Services(
            settings=settings,
            db=Database(settings.common.supabase_url, settings.common.supabase_key),
            storage=Storage.from_settings(settings.common),
            queue=WorkQueue(settings.queue_url, settings.aws_region),
            decoders=decoders,
            stop=stop or threading.Event(),
            parts_queue=(
                WorkQueue(settings.parts_queue_url, settings.aws_region)
                if settings.parts_queue_url else None
            ),
        )  # fmt: skip

    def run_once(self, services: Services | None = None, **overrides: str) -> list[dict[str, Any]]:
        """One pass of the real loop in this process; returns its events."""
        stream = io.StringIO()
        log = EventLog("transcode", environment="test", worker="test-worker", stream=stream)
        run_loop(services or self.services(**overrides), log, once=True)
        return events(stream.getvalue())

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
        return {k: os.environ[k] for k in keep if k in os.environ}


@dataclass(frozen=True)
class Upload:
    job_id: str
    media_id: str
    org_id: str
    key: str

    def message(self, **extra: Any) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "media_id": self.media_id,
            "org_id": self.org_id,
            "type": "transcode",
            **extra,
        }

    @property
    def prefix(self) -> str:
        return f"orgs/{self.org_id}/uploads/{self.media_id}/"


def events(output: str) -> list[dict[str, Any]]:
    """The JSON event lines of a worker's stdout."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("<") and ">" in line[:4]:
            line = line[line.index(">") + 1 :]
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


# --- the daemon as a subprocess ------------------------------------------------


def start_worker(world: World, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        env={**world.base_env(), **world.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_worker_logging_to(
    world: World, log: Path, cpus: str | None = None, **env: str
) -> subprocess.Popen:
    """The daemon with its events in a file: a long run would fill a pipe
    that nobody reads until the end, and the worker would block writing.
    `cpus`: the cores it (and its FFmpeg) may use, as taskset takes them."""
    pin = ["taskset", "-c", cpus] if cpus else []
    with open(log, "w") as out:
        return subprocess.Popen(
            [*pin, sys.executable, str(WORKER)], env={**world.base_env(), **world.env, **env},
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def logged(log: Path) -> list[dict[str, Any]]:
    """The events a worker has written to its log file so far."""
    found = []
    for line in (log.read_text() if log.is_file() else "").splitlines():
        try:
            found += events(line)
        except ValueError:  # (the line being written)
            continue
    return found


def wait_for_logged(
    log: Path, event_type: str, count: int = 1, timeout: float = 180, **fields: Any
) -> list[dict[str, Any]]:
    """Until `event_type` (with these fields) is in the log `count` times; returns them."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in logged(log) if e["event_type"] == event_type
                    and all(e.get(k) == v for k, v in fields.items())]  # fmt: skip
        return len(found) >= count

    wait_for(seen, timeout, f"{count} × {event_type} {fields or ''} in {log.name}")
    return found


PARTS_QUEUE = "rugbycodex-transcode-parts"


def parts_queue(world: World, visibility: int = 40) -> tuple[str, str]:
    """The part queue as DEPLOYMENT.md creates it (its DLQ after 10 receives):
    (queue URL, DLQ URL)."""
    dlq = world.sqs.create_queue(QueueName=PARTS_QUEUE + "-dlq")["QueueUrl"]
    arn = world.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "10"}
    url = world.sqs.create_queue(
        QueueName=PARTS_QUEUE,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return url, dlq


def clip_with_tone(
    media: Any, name: str, size: str = "640x360", seconds: float = 20,
    audio_seconds: float | None = None, gop: int = 250, preset: str = "ultrafast",
) -> Path:  # fmt: skip
    """An H.264 + AAC MP4 of testsrc2 at 30 fps with a continuous tone (as
    long as the video unless `audio_seconds` says), a keyframe every `gop`
    frames (x264's default 250 unless told)."""
    audio = seconds if audio_seconds is None else audio_seconds
    return media.made(
        name, *video_source(size, "30", seconds), *tone(audio),
        "-c:v", "libx264", "-preset", preset, "-g", str(gop), "-c:a", "aac",
    )  # fmt: skip


def stop_after(proc: subprocess.Popen, event_type: str, count: int, how: str = "SIGTERM") -> None:
    """Read the worker's events until `event_type` has come `count` times,
    then send it `how` and wait for it to end."""
    try:
        read_until(proc, [(event_type, None)] * count)
        proc.send_signal(getattr(signal, how))
        proc.communicate(timeout=60)
    finally:
        proc.kill()


def wait_for_event(proc: subprocess.Popen, event_type: str, timeout: float = 120) -> list[dict]:
    """Read the worker's event lines until `event_type` appears."""
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            seen.append(json.loads(line))
            if seen[-1]["event_type"] == event_type:
                return seen
    raise AssertionError(f"{event_type} never came; saw {[e['event_type'] for e in seen]}")


# Production timing at 1/30: a heartbeat every 240 s extending the visibility
# to 300 s, a lease stale after 270 s, a 60-s retry back-off; the receive
# budget is the test queue's own redrive (3, as in production).
SCALED = {  # what the workers are told; `scaled(world)` also scales the queue
    "HEARTBEAT_INTERVAL_SECONDS": "8",
    "HEARTBEAT_EXTENSION_SECONDS": "10",
    "JOB_STALE_SECONDS": "9",
    "PROGRESS_WRITE_SECONDS": "0.5",
    "RETRY_BACKOFF_SECONDS": "2",
    "VERBOSE_LOGGING": "true",
}
HEARTBEAT_SECONDS = 8
QUEUE_VISIBILITY_SCALED = 40  # the production queue's 1200 s


def scaled(world: World) -> dict[str, str]:
    """Production timing at 1/30 for this test: the queue's own visibility
    (what a message received by a worker killed before its first heartbeat
    waits out) as well as the workers' settings."""
    world.sqs.set_queue_attributes(
        QueueUrl=world.queue_url,
        Attributes={"VisibilityTimeout": str(QUEUE_VISIBILITY_SCALED)},
    )
    return dict(SCALED)


def read_until(proc: subprocess.Popen, steps: list[tuple[str, str | None]], timeout=180) -> None:
    """Read events until each (event_type, stage) of `steps` has been seen, in order."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while steps and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        kind, stage = steps[0]
        if event["event_type"] == kind and (stage is None or event.get("stage") == stage):
            steps.pop(0)
    assert not steps, f"never saw {steps}"


def wait_for(condition, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stop_all(procs: list[subprocess.Popen]) -> list[str]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    return [proc.communicate(timeout=60)[0] for proc in procs]


def check_final_output(world: World, upload, tmp_path) -> None:
    """The stream plays, and nothing in the folder is a leftover of the dead run."""
    local = world.download_prefix(upload.prefix + "streaming/", tmp_path / "out")
    master = m3u8.load(str(local / "index.m3u8"))
    posters = {p.name for p in (local / "thumbnails").glob("poster_*.jpg")}
    assert len(posters) == 1
    expected = {"index.m3u8", "thumbnails/storyboard.vtt", f"thumbnails/{posters.pop()}"}
    for variant in master.playlists:
        expected.add(variant.uri)
        media = m3u8.load(str(local / variant.uri))
        expected.update(seg.uri for seg in media.segments)
    sprites = {p.name for p in (local / "thumbnails").glob("storyboard_*.jpg")}
    expected.update(f"thumbnails/{name}" for name in sprites)
    present = {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()}
    assert present == expected


def by_type(log: list[dict], suffix: str) -> list[dict]:
    return [e for e in log if e["event_type"] == "transcode_" + suffix]


# --- what a player needs from a finished stream --------------------------------


def probe(path: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-print_format", "json",
         *args, str(path)],  # fmt: skip
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(result.stdout)


def stream_packets(files: list[Path], kind: str) -> list[tuple[int, int]]:
    found = []
    for file in files:
        data = probe(file, "-select_streams", f"{kind}:0", "-show_entries", "packet=pts,duration")
        found += [(int(p["pts"]), int(p.get("duration") or 0)) for p in data["packets"]]
    return found


def assert_continuous(local: Path, source: Path) -> None:
    """Every variant: segment numbers without a gap, the source's frames all
    there once, audio packets end to end (no gap, no overlap)."""
    counted = probe(source, "-count_packets", "-select_streams", "v:0",
                    "-show_entries", "stream=nb_read_packets")  # fmt: skip
    frames = int(counted["streams"][0]["nb_read_packets"])
    master = m3u8.load(str(local / "index.m3u8"))
    for variant in master.playlists:
        media = m3u8.load(str(local / variant.uri))
        numbers = [int(seg.uri.rsplit("_", 1)[1].split(".")[0]) for seg in media.segments]
        assert numbers == list(range(len(numbers))), numbers
        files = [local / seg.uri for seg in media.segments]
        video = sorted(stream_packets(files, "v"))
        assert len(video) == frames, (variant.uri, len(video), frames)
        steps = {b[0] - a[0] for a, b in zip(video, video[1:], strict=False)}
        assert len(steps) == 1, steps  # constant frame rate in, no lost or doubled frame out
        # End to end within 1 ms: a join's gap or overlap would be an AAC frame
        # (21 ms); a source with millisecond timestamps (Matroska) jitters less.
        audio = stream_packets(files, "a")
        gaps = [(a, b) for a, b in zip(audio, audio[1:], strict=False)
                if abs(b[0] - a[0] - a[1]) > 90]  # fmt: skip
        assert gaps == [], gaps[:5]
        check_segments_as_read(local, variant.uri, audio=bool(audio))


def check_segments_as_read(local: Path, uri: str, *, audio: bool = True) -> None:
    """The publish gate's rules (streaming/hls_check.py) over a whole variant,
    segment by segment, every join included: each opens on a keyframe, its
    EXTINF is its length, its frames continue the last, and it carries the
    audio of its own span (within 0.1 s of its cut) and no other."""
    media = m3u8.load(str(local / uri))
    listed = [(seg.uri, seg.duration) for seg in media.segments]
    packets = read_packets("ffprobe", [local / name for name, _ in listed])
    spans = [span_of(name, found) for (name, _), found in zip(listed, packets, strict=True)]
    try:
        check_segments(listed, spans, has_audio=audio, stream_starts=True, stream_ends=True)
    except StreamInvalid as exc:
        raise AssertionError(f"{uri}: {exc}") from None


def audio_packets(files: list[Path]) -> list[tuple[int, int]]:
    return stream_packets(files, "a")


def stream_times(path: Path) -> dict[str, tuple[float, float]]:
    """(start, end) of the first video and audio stream, from their packets."""
    found: dict[str, tuple[float, float]] = {}
    for kind in ("v", "a"):
        data = probe(path, "-select_streams", f"{kind}:0", "-show_entries",
                     "packet=pts_time,duration_time")  # fmt: skip
        times = [(float(p["pts_time"]), float(p.get("duration_time") or 0))
                 for p in data.get("packets", [])
                 if p.get("pts_time") not in (None, "N/A")]  # fmt: skip
        if times:
            found[kind] = (min(t for t, _ in times), max(t + d for t, d in times))
    return found


def ssim(variant: Path, source: Path, width: int, height: int, pre: str = "") -> float:
    """Mean SSIM of a rendition against the source scaled to its size."""
    chain = f"{pre}," if pre else ""
    graph = (
        f"[1:v]{chain}scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p,"
        "setpts=PTS-STARTPTS[ref];[0:v]format=yuv420p,setpts=PTS-STARTPTS[out];"
        "[out][ref]ssim"
    )
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-protocol_whitelist", "file",
         "-i", str(variant), "-i", str(source), "-lavfi", graph, "-f", "null", "-"],  # fmt: skip
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    found = re.search(r"SSIM .* All:([0-9.]+)", result.stderr)
    assert found, result.stderr[-1500:]
    return float(found.group(1))


@dataclass
class StreamReport:
    variants: list[dict[str, Any]] = field(default_factory=list)


def check_stream(
    local: Path,
    source: Path,
    *,
    segment: float = 6,
    audio: bool = True,
    ssim_floor: Callable[[int, int], float] | None = None,
    source_filter: str = "",
    keyframe_segments: int = 6,
) -> StreamReport:
    """Assert everything a player relies on; return what was measured."""
    master = m3u8.load(str(local / "index.m3u8"))
    assert master.is_variant and master.playlists
    src_format = probe(source, "-show_format", "-show_streams")
    duration = float(src_format["format"]["duration"])
    src_video = [s for s in src_format["streams"] if s["codec_type"] == "video"][0]
    frame = 1 / max(1.0, min(60.0, _rate(src_video.get("avg_frame_rate"))))
    src_times = stream_times(source)
    report = StreamReport()
    boundaries: list[float] | None = None
    for variant in master.playlists:
        playlist = local / variant.uri
        media = m3u8.load(str(playlist))
        durations = [seg.duration for seg in media.segments]
        assert abs(sum(durations) - duration) <= segment, (variant.uri, sum(durations), duration)
        # Same cuts in every rendition: a player can switch at any boundary.
        if boundaries is None:
            boundaries = durations
        assert len(durations) == len(boundaries)
        assert all(abs(a - b) < 0.05 for a, b in zip(durations, boundaries, strict=True))
        for seg in media.segments[:keyframe_segments]:
            first = probe(local / seg.uri, "-select_streams", "v:0", "-read_intervals", "%+#1",
                          "-show_entries", "frame=key_frame,pict_type")["frames"][0]  # fmt: skip
            assert first["key_frame"] == 1 and first["pict_type"] == "I", seg.uri
        rates = [(local / s.uri).stat().st_size * 8 / s.duration
                 for s in media.segments if s.duration >= 1.0] or [0.0]  # fmt: skip
        peak = max(rates)
        assert abs(variant.stream_info.bandwidth - peak) <= 0.1 * peak + 1, (variant.uri, peak)
        streams = probe(local / media.segments[0].uri, "-show_streams")["streams"]
        assert variant.stream_info.codecs == codecs_string(streams)
        kinds = sorted(s["codec_type"] for s in streams)
        assert kinds == (["audio", "video"] if audio else ["video"])
        video = [s for s in streams if s["codec_type"] == "video"][0]
        assert (video["width"], video["height"]) == tuple(variant.stream_info.resolution)
        assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1", "N/A")
        check_segments_as_read(local, variant.uri, audio=audio)
        if audio:
            out_times = stream_times(playlist)
            assert [s["channels"] for s in streams if s["codec_type"] == "audio"] == [2]
            # Sound from the picture's first frame to its last (silence where
            # the source has none), and where the source has it, in sync:
            # its first sound keeps its offset to the first frame.
            aac = 1024 / 48000
            assert out_times["a"][0] <= out_times["v"][0] + aac + 0.001, out_times
            assert out_times["a"][1] >= out_times["v"][1] - frame - aac - 0.001, out_times
            start_gap = src_times["a"][0] - src_times["v"][0]
            if start_gap <= frame:  # (the source's sound starts with its picture)
                out_gap = out_times["a"][0] - out_times["v"][0]
                assert abs(out_gap - start_gap) <= frame + aac + 0.001, (start_gap, out_gap)
        entry = {"uri": variant.uri, "resolution": variant.stream_info.resolution,
                 "bandwidth": variant.stream_info.bandwidth, "peak": int(peak),
                 "codecs": variant.stream_info.codecs, "segments": len(durations)}  # fmt: skip
        if ssim_floor is not None:
            width, height = variant.stream_info.resolution
            entry["ssim"] = ssim(playlist, source, width, height, source_filter)
            assert entry["ssim"] >= ssim_floor(width, height), entry
        report.variants.append(entry)
    return report


def _rate(text: str | None) -> float:
    try:
        top, _, bottom = (text or "0/1").partition("/")
        return float(top) / float(bottom or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


# --- a stand-in for Axiom ---------------------------------------------------------


class FakeAxiom(BaseHTTPRequestHandler):
    """Axiom's ingest endpoint: keeps the gzipped NDJSON events it is sent."""

    received: list[dict[str, Any]]
    hold: threading.Event
    paths: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.hold.wait(30)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        lines = gzip.decompress(body).decode().splitlines()
        self.received.extend(json.loads(line) for line in lines)
        self.paths.append(self.path)
        answer = json.dumps({"ingested": len(lines), "failed": 0, "failures": [],
                             "processedBytes": len(body), "blocksCreated": 0,
                             "walLength": 0}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def axiom_server(hold: threading.Event) -> tuple[ThreadingHTTPServer, type[FakeAxiom]]:
    handler = type("Axiom", (FakeAxiom,), {"received": [], "hold": hold, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler
