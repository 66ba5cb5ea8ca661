"""The test gateway answers like PostgREST for what the workers use."""

from __future__ import annotations

import uuid

import httpx

from devstack.stack import API_KEY
from tests.support import World


def _client(world: World) -> httpx.Client:
    return httpx.Client(
        base_url=world.stack.gateway_url + "/rest/v1",
        headers={"apikey": API_KEY, "Authorization": f"Bearer {API_KEY}"},
    )


def test_filters_order_limit_and_representation(world: World) -> None:
    ups = [world.upload(None, send=False) for _ in range(3)]
    with _client(world) as client:
        pair = f"in.({ups[0].job_id},{ups[1].job_id})"
        got = client.get(
            "/jobs", params={"select": "id,state", "id": pair, "order": "id.desc", "limit": "1"}
        )
        assert got.status_code == 200
        assert got.json() == [{"id": max(ups[0].job_id, ups[1].job_id), "state": "queued"}]
        patched = client.patch(
            "/jobs", params={"id": f"eq.{ups[2].job_id}", "state": "eq.queued"},
            json={"state": "running", "progress": 0.5}, headers={"Prefer": "return=representation"},
        )  # fmt: skip
        assert patched.status_code == 200 and patched.json()[0]["state"] == "running"
        assert patched.json()[0]["progress"] == 0.5
        again = client.patch(
            "/jobs", params={"id": f"eq.{ups[2].job_id}", "state": "eq.queued"},
            json={"state": "running"}, headers={"Prefer": "return=representation"},
        )  # fmt: skip
        assert again.json() == []  # compare-and-swap: nothing matched
        either = client.get(
            "/jobs", params={"select": "id", "or": f"(state.eq.running,id.eq.{ups[0].job_id})"}
        )
        assert {r["id"] for r in either.json()} == {ups[0].job_id, ups[2].job_id}


def test_errors_have_postgrest_shape(world: World) -> None:
    with _client(world) as client:
        bad = client.get("/jobs", params={"id": "eq.not-a-uuid"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "22P02" and set(bad.json()) == {
            "code", "details", "hint", "message",
        }  # fmt: skip
        check = client.patch("/jobs", params={"id": f"eq.{uuid.uuid4()}"}, json={"progress": 2})
        assert check.status_code in (204, 400)
        missing = client.get("/no_such_table")
        assert missing.status_code == 404
    anonymous = httpx.get(world.stack.gateway_url + "/rest/v1/jobs")
    assert anonymous.status_code == 401
