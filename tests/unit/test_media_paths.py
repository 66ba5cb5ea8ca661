"""Which keys a worker may touch: the checks that keep each job in its folder."""

from __future__ import annotations

import uuid

import pytest

from utils.media_paths import (
    UnsafeKey,
    check_org_base,
    cleanup_prefix,
    media_prefix,
    raw_upload_key,
)

ORG, MEDIA = str(uuid.uuid4()), str(uuid.uuid4())
RAW = f"orgs/{ORG}/uploads/{MEDIA}/raw/match.mp4"


def test_raw_key_in_its_own_folder_is_accepted() -> None:
    assert raw_upload_key(RAW, ORG, MEDIA) == RAW
    assert raw_upload_key(RAW, ORG.upper(), MEDIA) == RAW


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/" + RAW,
        f"orgs/{ORG}/uploads/{MEDIA}/raw/",
        f"orgs/{ORG}/uploads/{MEDIA}/raw/../../x/raw/a.mp4",
        f"orgs/{ORG}/uploads/{MEDIA}/streaming/index.m3u8",
        f"orgs/{uuid.uuid4()}/uploads/{MEDIA}/raw/a.mp4",
        f"orgs/{ORG}/uploads/{MEDIA}//raw/a.mp4",
        f"orgs/{ORG}/uploads/{MEDIA}/raw/a\n.mp4",
        f"orgs/{ORG}/uploads/{MEDIA}/raw/" + "a" * 1100,
        f"orgs/{ORG}/uploads/{MEDIA}/raw/%2e%2e/a.mp4".replace("%2e%2e", ".."),
    ],
)
def test_raw_key_outside_its_folder_is_refused(key: str) -> None:
    with pytest.raises(UnsafeKey):
        raw_upload_key(key, ORG, MEDIA)


def test_media_prefix_needs_uuids() -> None:
    assert media_prefix(ORG, MEDIA) == f"orgs/{ORG}/uploads/{MEDIA}/"
    with pytest.raises(UnsafeKey):
        media_prefix("../..", MEDIA)


def test_cleanup_prefix_is_exactly_the_videos_folder() -> None:
    assert cleanup_prefix(RAW, MEDIA) == f"orgs/{ORG}/uploads/{MEDIA}/"
    for name in ("m\x01tch.mp4", "a\\b.mp4", "ünïcode 🏉.mp4", "x" * 2000):
        odd = f"orgs/{ORG}/uploads/{MEDIA}/raw/{name}"  # only the folder segments matter
        assert cleanup_prefix(odd, MEDIA) == f"orgs/{ORG}/uploads/{MEDIA}/"


@pytest.mark.parametrize(
    "path, media",
    [
        (None, MEDIA),
        ("", MEDIA),
        ("orgs/", MEDIA),
        (f"orgs/{ORG}/uploads", MEDIA),
        (f"orgs/{ORG}/uploads/{MEDIA}/../x", MEDIA),
        ("/" + RAW, MEDIA),
        (RAW, str(uuid.uuid4())),
        (RAW, "not-a-uuid"),
        (f"orgs/not-a-uuid/uploads/{MEDIA}/raw/a.mp4", MEDIA),
        (f"orgz/{ORG}/uploads/{MEDIA}/raw/a.mp4", MEDIA),
        (f"orgs/{ORG}/uploads/{MEDIA}-copy/raw/a.mp4", MEDIA),
        (f"orgs/{ORG}/uploads/{MEDIA}\x01/raw/a.mp4", MEDIA),
        (f"orgs/{ORG}/uploads/{MEDIA}/raw/../../a.mp4", MEDIA),
        (f"orgs/{ORG}//uploads/{MEDIA}/raw/a.mp4", MEDIA),
    ],
)
def test_cleanup_prefix_refuses_anything_else(path: object, media: str) -> None:
    with pytest.raises(UnsafeKey):
        cleanup_prefix(path, media)


def test_only_the_org_uploads_folder_is_an_accepted_base() -> None:
    org = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    check_org_base(f"orgs/{org}/uploads/", org)
    for base in (
        f"orgs/{org}/uploads", f"orgs/{org}/", f"orgs/{org}/uploads/../", "", None, 7,
        f"orgs/{org.upper()}/uploads/", f"orgs/{org}/archive/", f"/orgs/{org}/uploads/",
        "orgs/00000000-0000-0000-0000-000000000000/uploads/",
    ):  # fmt: skip
        with pytest.raises(UnsafeKey):
            check_org_base(base, org)
