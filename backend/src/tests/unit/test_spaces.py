"""Spaces, on FakeDAOs: members create and see them; nobody else learns they exist."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient

from tests import fakes
from tests.conftest import unique_name
from tests.unit.assertions import (
    Caller,
    add_member,
    assert_created,
    assert_error,
    assert_validation_error,
    collect_pages,
    create_organization,
    create_space,
    new_caller,
    new_workspace,
)

SPACE_FIELDS = {"id", "name", "organization_id", "created_at", "updated_at"}


async def _spaces(client: QuartClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get("/spaces", query_string=params, headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert set(page) == {"items", "next_cursor"}
    return page


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# Create -------------------------------------------------------------------------------------


async def test_owner_creates_a_space(client: QuartClient) -> None:
    owner = await new_caller(client)
    organization = await create_organization(client, owner)
    name = unique_name("space")

    response = await client.post(
        "/spaces",
        json={"name": name, "organization_id": organization["id"]},
        headers=owner.headers,
    )

    body = await assert_created(response)
    assert set(body) == SPACE_FIELDS
    assert body["name"] == name
    assert body["organization_id"] == organization["id"]
    uuid.UUID(body["id"])
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    assert datetime.fromisoformat(body["updated_at"]).utcoffset() is not None
    assert response.headers.get("Location") == f"/spaces/{body['id']}"
    fetched = await client.get(response.headers["Location"], headers=owner.headers)
    assert fetched.status_code == 200
    assert await fetched.get_json() == body


async def test_a_plain_member_creates_a_space_the_owner_sees(client: QuartClient) -> None:
    owner, member = await new_caller(client), await new_caller(client)
    organization = await create_organization(client, owner)
    await add_member(client, owner, organization["id"], member)

    space = await create_space(client, member, organization["id"])

    assert space["organization_id"] == organization["id"]
    assert _ids((await _spaces(client, owner))["items"]) == [space["id"]]


INVALID_SPACES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("empty-name", {"name": ""}, ["name"]),
    ("whitespace-name", {"name": "  \n "}, ["name"]),
    ("101-character-name", {"name": "x" * 101}, ["name"]),
    ("null-name", {"name": None}, ["name"]),
    ("organization-id-not-a-uuid", {"organization_id": "not-a-uuid"}, ["organization_id"]),
    ("organization-id-null", {"organization_id": None}, ["organization_id"]),
    ("extra-field", {"owner": "me"}, ["owner"]),
]


async def test_creating_a_space_refuses_an_invalid_body(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    owner = await new_caller(client)
    organization = await create_organization(client, owner)
    valid = {"name": "fine", "organization_id": organization["id"]}

    for case, changes, loc in INVALID_SPACES:
        with subtests.test(case=case):
            response = await client.post(
                "/spaces", json={**valid, **changes}, headers=owner.headers
            )

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    for missing in ("name", "organization_id"):
        with subtests.test(case=f"missing-{missing}"):
            body = {key: value for key, value in valid.items() if key != missing}
            response = await client.post("/spaces", json=body, headers=owner.headers)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [[missing]]
    assert fakes.FakeSpaceDAO.rows == {}


# List ---------------------------------------------------------------------------------------


async def test_list_spaces_shows_only_the_spaces_of_the_callers_organizations(
    client: QuartClient,
) -> None:
    alice, bob = await new_caller(client), await new_caller(client)
    alices = await new_workspace(client, alice)
    bobs = await new_workspace(client, bob)
    bobs_other = await create_space(client, bob, bobs.organization["id"])

    alice_sees = await _spaces(client, alice)
    bob_sees = await _spaces(client, bob)

    assert _ids(alice_sees["items"]) == [alices.space["id"]]
    assert alice_sees["next_cursor"] is None
    assert _ids(bob_sees["items"]) == [bobs_other["id"], bobs.space["id"]]
    for space in alice_sees["items"] + bob_sees["items"]:
        assert set(space) == SPACE_FIELDS


async def test_list_spaces_filters_by_organization(client: QuartClient) -> None:
    alice, bob = await new_caller(client), await new_caller(client)
    alices = await new_workspace(client, alice)
    bobs = await new_workspace(client, bob)
    await add_member(client, bob, bobs.organization["id"], alice)
    hidden = await new_workspace(client, bob)

    everything = await _spaces(client, alice)
    own = await _spaces(client, alice, organization_id=alices.organization["id"])
    shared = await _spaces(client, alice, organization_id=bobs.organization["id"])
    not_a_member = await _spaces(client, alice, organization_id=hidden.organization["id"])
    unknown = await _spaces(client, alice, organization_id=str(uuid.uuid4()))

    assert _ids(everything["items"]) == [bobs.space["id"], alices.space["id"]]
    assert _ids(own["items"]) == [alices.space["id"]]
    assert _ids(shared["items"]) == [bobs.space["id"]]
    assert not_a_member == unknown == {"items": [], "next_cursor": None}


async def test_list_spaces_with_an_exact_multiple_of_the_limit_ends_without_an_empty_page(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    await create_space(client, workspace.owner, workspace.organization["id"])

    pages = await collect_pages(client, workspace.owner, "/spaces", {"limit": 1})

    assert [len(page["items"]) for page in pages] == [1, 1]


INVALID_SPACE_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("limit-0", {"limit": "0"}, "limit"),
    ("limit-101", {"limit": "101"}, "limit"),
    ("limit-not-a-number", {"limit": "abc"}, "limit"),
    ("organization-id-not-a-uuid", {"organization_id": "nope"}, "organization_id"),
    ("cursor-garbage", {"cursor": "%%%garbage%%%"}, "cursor"),
    ("cursor-too-long", {"cursor": "A" * 201}, "cursor"),
]


async def test_list_spaces_refuses_invalid_query_parameters(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    caller = await new_caller(client)

    for case, params, field in INVALID_SPACE_QUERIES:
        with subtests.test(case=case):
            response = await client.get("/spaces", query_string=params, headers=caller.headers)

            detail = await assert_validation_error(response)
            assert [item["loc"][-1] for item in detail] == [field]


# Get ----------------------------------------------------------------------------------------


async def test_get_space_of_another_organization_is_the_same_404_as_a_random_id(
    client: QuartClient,
) -> None:
    alice, bob = await new_caller(client), await new_caller(client)
    alices = await new_workspace(client, alice)

    own = await client.get(f"/spaces/{alices.space['id']}", headers=alice.headers)
    hidden = await client.get(f"/spaces/{alices.space['id']}", headers=bob.headers)
    missing = await client.get(f"/spaces/{uuid.uuid4()}", headers=bob.headers)

    assert own.status_code == 200
    assert await own.get_json() == alices.space
    assert isinstance(await assert_error(hidden, 404), str)
    assert isinstance(await assert_error(missing, 404), str)
    assert await hidden.get_json() == await missing.get_json()


async def test_a_malformed_space_id_is_404_never_500(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    caller = await new_caller(client)

    for space_id in ("not-a-uuid", "123", f"{uuid.uuid4()}0", "%00"):
        with subtests.test(space_id=space_id):
            await assert_error(await client.get(f"/spaces/{space_id}", headers=caller.headers), 404)
