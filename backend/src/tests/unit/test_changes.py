"""The change feed, on FakeDAOs: tokens, limits, who may read it, and what a copy built from
it holds. The exactness under concurrent writers is a live test (test_changes_live.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient

from app.api.feed_tokens import FeedToken
from tests import fakes
from tests.unit.assertions import (
    Caller,
    add_member,
    assert_error,
    assert_validation_error,
    create_organization,
    create_space,
    create_todo,
    new_caller,
    new_workspace,
)

Copy = dict[tuple[str, str], dict[str, Any]]


async def _page(
    client: QuartClient, caller: Caller, organization_id: str, **query: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/organizations/{organization_id}/changes", query_string=query, headers=caller.headers
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert set(page) == {"changes", "next", "more"}
    return page


async def _follow(
    client: QuartClient, caller: Caller, organization_id: str, copy: Copy, since: str | None
) -> str:
    """Apply every change ready now; the token after them."""
    while True:
        query: dict[str, Any] = {"limit": 2}
        if since is not None:
            query["since"] = since
        page = await _page(client, caller, organization_id, **query)
        for change in page["changes"]:
            key = (change["kind"], change["id"])
            if change["op"] == "upsert":
                copy[key] = change["data"]
            else:
                assert change["data"] is None
                copy.pop(key, None)
        since = page["next"]
        if not page["more"]:
            assert since is not None
            return since


async def test_a_snapshot_holds_every_object_as_its_get_returns_it(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    owner, organization_id = workspace.owner, workspace.organization["id"]
    todo = await create_todo(client, owner, workspace.space["id"])
    copy: Copy = {}
    await _follow(client, owner, organization_id, copy, None)

    assert copy[("organization", organization_id)] == {
        **workspace.organization,
        "role": "owner",
    }
    assert copy[("space", workspace.space["id"])] == workspace.space
    assert copy[("todo", todo["id"])] == todo
    member = copy[("member", str(owner.id))]
    assert member["role"] == "owner"
    assert member["user_name"] == owner.name
    assert len(copy) == 4


async def test_changes_after_a_token_bring_the_copy_up_to_date(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    owner, organization_id = workspace.owner, workspace.organization["id"]
    first = await create_todo(client, owner, workspace.space["id"])
    copy: Copy = {}
    token = await _follow(client, owner, organization_id, copy, None)

    second = await create_todo(client, owner, workspace.space["id"])
    response = await client.patch(
        f"/todos/{first['id']}", json={"done": True}, headers=owner.headers
    )
    assert response.status_code == 200
    patched = await response.get_json()
    other_space = await create_space(client, owner, organization_id)
    newcomer = await new_caller(client)
    await add_member(client, owner, organization_id, newcomer)
    response = await client.delete(f"/todos/{second['id']}", headers=owner.headers)
    assert response.status_code == 204
    response = await client.delete(f"/spaces/{other_space['id']}", headers=owner.headers)
    assert response.status_code == 204

    token = await _follow(client, owner, organization_id, copy, token)
    fresh: Copy = {}
    await _follow(client, owner, organization_id, fresh, None)
    assert copy == fresh
    assert copy[("todo", first["id"])] == patched
    assert ("todo", second["id"]) not in copy
    assert ("member", str(newcomer.id)) in copy

    page = await _page(client, owner, organization_id, since=token)
    assert page == {"changes": [], "next": token, "more": False}


async def test_outsiders_get_404_and_a_removed_member_too(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    organization_id = workspace.organization["id"]
    stranger = await new_caller(client)
    response = await client.get(
        f"/organizations/{organization_id}/changes", headers=stranger.headers
    )
    await assert_error(response, 404)
    member = await new_caller(client)
    await add_member(client, workspace.owner, organization_id, member)
    await _page(client, member, organization_id)
    response = await client.delete(
        f"/organizations/{organization_id}/members/{member.id}", headers=workspace.owner.headers
    )
    assert response.status_code == 204
    response = await client.get(f"/organizations/{organization_id}/changes", headers=member.headers)
    await assert_error(response, 404)


@pytest.mark.parametrize("limit", [0, -1, 1001, "many"])
async def test_a_limit_out_of_range_is_a_422(client: QuartClient, limit: object) -> None:
    workspace = await new_workspace(client)
    response = await client.get(
        f"/organizations/{workspace.organization['id']}/changes",
        query_string={"limit": limit},
        headers=workspace.owner.headers,
    )
    await assert_validation_error(response)


async def _token(client: QuartClient, caller: Caller, organization_id: str) -> str:
    return str((await _page(client, caller, organization_id))["next"])


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: "garbage",
        lambda token: token + "x",
        lambda token: "x" + token,
        lambda token: token.replace(".", ""),
        lambda token: token.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAA",
        lambda token: "." + token.split(".")[1],
        lambda token: "é" * 10,
    ],
)
async def test_a_malformed_or_altered_token_is_a_422(client: QuartClient, forge: Any) -> None:
    workspace = await new_workspace(client)
    organization_id = workspace.organization["id"]
    token = await _token(client, workspace.owner, organization_id)
    response = await client.get(
        f"/organizations/{organization_id}/changes",
        query_string={"since": forge(token)},
        headers=workspace.owner.headers,
    )
    errors = await assert_validation_error(response)
    assert errors[0]["loc"] == ["query", "since"]


async def test_a_token_signed_with_another_key_is_a_422(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    organization_id = workspace.organization["id"]
    forged = FeedToken(uuid.UUID(organization_id), "changes", Decimal(0)).encode(
        "some-other-key-that-is-long-enough-0123456789"
    )
    response = await client.get(
        f"/organizations/{organization_id}/changes",
        query_string={"since": forged},
        headers=workspace.owner.headers,
    )
    errors = await assert_validation_error(response)
    assert "not issued by this service" in errors[0]["msg"]


async def test_another_organizations_token_is_a_422(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    other = await create_organization(client, workspace.owner)
    token = await _token(client, workspace.owner, other["id"])
    response = await client.get(
        f"/organizations/{workspace.organization['id']}/changes",
        query_string={"since": token},
        headers=workspace.owner.headers,
    )
    errors = await assert_validation_error(response)
    assert "another organization" in errors[0]["msg"]


async def test_a_token_older_than_the_retention_is_a_410_that_says_to_start_over(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    organization_id = workspace.organization["id"]
    token = await _token(client, workspace.owner, organization_id)
    await create_todo(client, workspace.owner, workspace.space["id"])
    fakes.FakeChangeDAO.oldest = Decimal(fakes.FakeChangeDAO.last_position + 1)

    response = await client.get(
        f"/organizations/{organization_id}/changes",
        query_string={"since": token},
        headers=workspace.owner.headers,
    )
    detail = await assert_error(response, 410)
    assert "start again without `since`" in detail
    await _page(client, workspace.owner, organization_id)  # a fresh start still works
