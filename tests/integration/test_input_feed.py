"""The upload's loopback feed (streaming/input_feed.py): FFmpeg reads the
upload while it downloads, and reads nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devstack.clips import video_source
from streaming.input_feed import BLOCK, InputFeed, _Landed
from streaming.media_probe import input_guard
from tests.support import BUCKET, ROOT, World
from utils.storage import Storage


def test_landed_ranges_merge_and_answer_what_is_readable() -> None:
    landed = _Landed()
    landed.add(100, 200)
    landed.add(300, 400)
    assert landed.run_from(150) == 50 and landed.run_from(250) == 0
    landed.add(200, 300)  # fills the gap: one run
    assert (landed.starts, landed.ends) == ([100], [400])
    landed.add(0, 50)
    landed.add(40, 120)  # overlaps two edges
    assert (landed.starts, landed.ends) == ([0], [400]) and landed.total() == 400


def test_feed_serves_only_the_upload_and_honours_ranges(world: World, tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: the tail and the rest come separately
    key = "orgs/o/uploads/m/raw/clip.mp4"
    world.s3.put_object(Bucket="rugbycodex-media", Key=key, Body=data)
    storage = Storage(world.env["WASABI_ENDPOINT"], "us-east-1", "k", "s")
    feed = InputFeed(tmp_path / "source", len(data))
    try:
        feed.start(storage, "rugbycodex-media", key)
        request = urllib.request.Request(feed.url, headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 206 and answer.read() == data[1000:2000]
        with urllib.request.urlopen(feed.url, timeout=30) as answer:
            assert answer.read() == data
        feed.wait_for_all(lambda: None)
        assert feed.complete and (tmp_path / "source").read_bytes() == data
        other = feed.url.rsplit("/", 1)[0] + "/etc-passwd"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(other, timeout=30)
        assert refused.value.code == 404
        beyond = urllib.request.Request(feed.url, headers={"Range": f"bytes={len(data)}-"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(beyond, timeout=30)
        assert refused.value.code == 416
    finally:
        feed.close()
    assert feed.url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(feed.url, timeout=5)  # gone with the job


def test_ffmpeg_is_never_pointed_at_another_url() -> None:
    for url in ("http://example.com/a" * 2, "http://127.0.0.1:80/../x", "https://127.0.0.1:1/abc"):
        with pytest.raises(ValueError):
            input_guard(url)
    assert input_guard(Path("/job/source"))[:2] == ["-protocol_whitelist", "file"]


FETCH = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=20).status)"


def test_only_this_process_and_its_children_may_read_the_feed(world: World, tmp_path: Path) -> None:
    """The URL is in FFmpeg's argv, which every account can read in /proc:
    a process that is not ours nor our child gets nothing."""
    data = b"x" * 4096
    key = "orgs/o/uploads/m/raw/clip.mp4"
    world.s3.put_object(Bucket="rugbycodex-media", Key=key, Body=data)
    feed = InputFeed(tmp_path / "source", len(data))
    try:
        feed.start(Storage(world.env["WASABI_ENDPOINT"], "us-east-1", "k", "s"), BUCKET, key)
        feed.wait_for_all(lambda: None)
        child = subprocess.run([sys.executable, "-c", FETCH, feed.url],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert child.stdout.strip() == "200", child.stderr[-500:]
        # A grandchild (the shell's child), standing in for another account's process.
        stranger = subprocess.run(
            ["sh", "-c", f'"{sys.executable}" -c "$0" "$1"; exit 0', FETCH, feed.url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "HTTP Error 403" in stranger.stderr, stranger.stderr[-500:]
        assert feed.refused == 1
    finally:
        feed.close()


UNDER_PID_SUBSET = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from streaming.input_feed import InputFeed
feed = InputFeed(Path(sys.argv[2]), 4)
feed.write_at(0, b"abcd")
fetch = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=20).read())"
print(subprocess.run([sys.executable, "-c", fetch, feed.url], capture_output=True,
                     text=True).stdout.strip())
feed.close()
"""


def test_the_feed_knows_its_children_under_the_units_proc_subset(tmp_path: Path) -> None:
    """The unit mounts /proc with `ProcSubset=pid` (no /proc/net): the feed
    still tells its children from strangers. Run in a mount namespace of its
    own with /proc mounted that way (needs root and unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount /proc with subset=pid")
    script = tmp_path / "feed.py"
    script.write_text(UNDER_PID_SUBSET)
    inner = (f"umount /proc 2>/dev/null; mount -t proc -o subset=pid proc /proc && "
             f"test ! -e /proc/net/tcp && exec '{sys.executable}' '{script}' "
             f"'{ROOT}' '{tmp_path / 'source'}'")  # fmt: skip
    run = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c",
                          inner], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.stdout.strip() == "b'abcd'", run.stderr[-1500:]


@pytest.mark.parametrize("size", [BLOCK - 1, BLOCK + 1, 8 * BLOCK + 378_000, 9 * BLOCK])
def test_a_ranged_feed_fetches_the_start_and_the_whole_tail_first(
    world: World, tmp_path: Path, size: int
) -> None:
    """Whatever the size against the block grid (the tail may cross a block's end)."""
    data = os.urandom(size)
    key = "orgs/o/uploads/m/raw/ranged.mp4"
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    storage = Storage(world.env["WASABI_ENDPOINT"], "us-east-1", "k", "s")
    feed = InputFeed(tmp_path / "source", size)
    try:
        feed.start_ranged(storage, BUCKET, key)
        feed.wait_for_start(lambda: None)
        request = urllib.request.Request(feed.url, headers={"Range": f"bytes={size - 1000}-"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.read() == data[-1000:]
    finally:
        feed.close()
    assert feed.fetched <= 2 * BLOCK + feed.tail_bytes + BLOCK


def test_ffmpeg_on_a_ranged_feed_reads_its_span_not_the_upload(
    world: World, media, tmp_path: Path
) -> None:
    """A 10-s span of a 2-minute upload: the index, the span and a few blocks."""
    clip = media.made(
        "ranged_long.mp4", *video_source("640x360", "30", 120), "-c:v", "libx264",
        "-preset", "ultrafast", "-g", "60", "-b:v", "4M",
    )  # fmt: skip
    size = clip.stat().st_size
    key = "orgs/o/uploads/m/raw/long.mp4"
    world.s3.upload_file(str(clip), BUCKET, key)
    storage = Storage(world.env["WASABI_ENDPOINT"], "us-east-1", "k", "s")
    feed = InputFeed(tmp_path / "source", size)
    try:
        feed.start_ranged(storage, BUCKET, key)
        feed.wait_for_start(lambda: None)
        run = subprocess.run(
            ["ffmpeg", "-v", "error", "-noaccurate_seek", "-ss", "60", "-t", "10",
             *input_guard(feed.url), "-f", "null", "-"], capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-500:]
    finally:
        feed.close()
    # the span (10 s, and the 2-s GOP before it) of 120 s, and at most 8 blocks besides
    assert feed.fetched <= size * 12 / 120 + 8 * BLOCK, (feed.fetched, size)
    assert feed.fetched < size / 2
