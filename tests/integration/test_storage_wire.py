"""What our S3 client sends, seen at the HTTP level: what Wasabi and other
S3-compatible stores accept, whatever boto3 in our range is installed.

moto accepts CRC32 checksums and missing Content-MD5 alike, so the requests
are read on the wire (a recording proxy in front of moto), not from moto's
answers.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from devstack.fault_proxy import FaultProxy
from tests.support import BUCKET, World
from utils.storage import MiB, Storage, StoredObject, Upload


@pytest.fixture
def proxy(world: World):
    proxy = FaultProxy(world.stack.moto.port)
    yield proxy
    proxy.close()


def _checksum_headers(headers: dict[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in headers.items()
        if k.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum", "x-amz-trailer"))
        or (k.lower() == "content-encoding" and "aws-chunked" in v)
        or (k.lower() == "x-amz-content-sha256" and "STREAMING" in v)
    }  # fmt: skip


def test_uploads_carry_no_checksum_and_delete_objects_carries_content_md5(
    world: World, proxy: FaultProxy, tmp_path: Path
) -> None:
    storage = Storage(proxy.url, "us-east-1", "k", "s", multipart_threshold=5 * MiB,
                      part_size=5 * MiB)  # fmt: skip
    big, small = tmp_path / "big.ts", tmp_path / "index.m3u8"
    big.write_bytes(os.urandom(11 * MiB))  # three parts: CreateMultipartUpload, UploadPart…
    small.write_text("#EXTM3U\n")
    prefix = "orgs/o/uploads/m/streaming/"
    storage.upload(BUCKET, [
        Upload(big, prefix + "big.ts", "video/mp2t", "public, max-age=60"),
        Upload(small, prefix + "index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
    ])  # fmt: skip
    objects = [StoredObject(prefix + "big.ts"), StoredObject(prefix + "index.m3u8")]
    assert storage.delete_objects(BUCKET, objects) == []
    assert world.keys(prefix) == []

    puts = [(path, h) for method, path, h in proxy.headers if method == "PUT"]
    assert len(puts) == 4, [p for p, _ in puts]  # three parts and the small file
    assert sum("partNumber=" in path for path, _ in puts) == 3
    for path, headers in puts:
        assert _checksum_headers(headers) == {}, (path, headers)
    deletes = [(p, h) for m, p, h in proxy.headers if m == "POST" and "delete" in p]
    assert len(deletes) == 1
    _, headers = deletes[0]
    assert _checksum_headers(headers) == {}, headers
    md5 = {k.lower(): v for k, v in headers.items()}.get("content-md5")
    assert md5 is not None and len(base64.b64decode(md5)) == hashlib.md5().digest_size
