"""Organizations and their members, on FakeDAOs: who may see, create and add what.

A non-member must not learn that an organization exists: everything of it answers the same
404 as a random id would.
"""

from __future__ import annotations

import uuid
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
    create_organization,
    create_space,
    new_caller,
)


async def _organizations(client: QuartClient, caller: Caller) -> list[dict[str, Any]]:
    response = await client.get("/organizations", headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert isinstance(body, list)
    return body


async def _post_member(
    client: QuartClient, caller: Caller, organization_id: str, body: dict[str, Any]
) -> Any:
    return await client.post(
        f"/organizations/{organization_id}/members", json=body, headers=caller.headers
    )


def _memberships_of(organization_id: str) -> dict[uuid.UUID, str]:
    """user id -> role, straight from the fake store."""
    return {
        m.user_id: m.role
        for m in fakes.FakeMembershipDAO.rows.values()
        if m.organization_id == uuid.UUID(organization_id)
    }


# Create -------------------------------------------------------------------------------------


async def test_create_organization_accepts_a_100_character_name(client: QuartClient) -> None:
    caller = await new_caller(client)
    name = unique_name("org").ljust(100, "x")

    response = await client.post("/organizations", json={"name": name}, headers=caller.headers)

    assert (await assert_created(response))["name"] == name


async def test_create_organization_with_a_taken_name_is_409_and_creates_nothing(
    client: QuartClient,
) -> None:
    first, second = await new_caller(client), await new_caller(client)
    name = unique_name("org")
    organization = await create_organization(client, first, name)

    same_caller = await client.post("/organizations", json={"name": name}, headers=first.headers)
    other_caller = await client.post("/organizations", json={"name": name}, headers=second.headers)
    padded = await client.post("/organizations", json={"name": f" {name} "}, headers=second.headers)

    for response in (same_caller, other_caller, padded):
        assert isinstance(await assert_error(response, 409), str)
    assert [o.name for o in fakes.FakeOrganizationDAO.rows.values()] == [name]
    assert [o["id"] for o in await _organizations(client, first)] == [organization["id"]]
    assert await _organizations(client, second) == []


INVALID_ORGANIZATIONS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("empty", {"name": ""}, ["name"]),
    ("whitespace-only", {"name": "   \t "}, ["name"]),
    ("101-characters", {"name": "x" * 101}, ["name"]),
    ("not-a-string", {"name": 42}, ["name"]),
    ("null", {"name": None}, ["name"]),
    ("missing", {}, ["name"]),
    ("extra-field", {"name": "fine", "owner_id": str(uuid.uuid4())}, ["owner_id"]),
]


async def test_create_organization_refuses_an_invalid_body(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    caller = await new_caller(client)

    for case, body, loc in INVALID_ORGANIZATIONS:
        with subtests.test(case=case):
            response = await client.post("/organizations", json=body, headers=caller.headers)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    assert fakes.FakeOrganizationDAO.rows == {}
    assert fakes.FakeMembershipDAO.rows == {}


# Get ----------------------------------------------------------------------------------------


MALFORMED_IDS = [
    "not-a-uuid",
    "123",
    f"{uuid.uuid4()}0",
    str(uuid.uuid4())[:-1],
    "%00",
    "..%2F..%2Fetc",
    "' OR 1=1 --",
]


async def test_a_malformed_organization_id_is_404_never_500(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    caller = await new_caller(client)

    for organization_id in MALFORMED_IDS:
        with subtests.test(organization_id=organization_id):
            get = await client.get(f"/organizations/{organization_id}", headers=caller.headers)
            members = await client.post(
                f"/organizations/{organization_id}/members",
                json={"user_name": caller.name},
                headers=caller.headers,
            )

            await assert_error(get, 404)
            await assert_error(members, 404)


# Members ------------------------------------------------------------------------------------


async def test_the_default_role_is_member_and_members_cannot_add_members(
    client: QuartClient,
) -> None:
    owner, member, newcomer = [await new_caller(client) for _ in range(3)]
    organization = await create_organization(client, owner)

    added = await _post_member(client, owner, organization["id"], {"user_name": member.name})
    by_member = await _post_member(client, member, organization["id"], {"user_name": newcomer.name})
    self_promotion = await _post_member(
        client, member, organization["id"], {"user_name": member.name, "role": "owner"}
    )

    assert (await assert_created(added))["role"] == "member"
    assert isinstance(await assert_error(by_member, 403), str)
    assert isinstance(await assert_error(self_promotion, 403), str)
    assert _memberships_of(organization["id"]) == {
        owner.id: "owner",
        member.id: "member",
    }


INVALID_MEMBERS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown-role", {"role": "admin"}, ["role"]),
    ("uppercase-role", {"role": "OWNER"}, ["role"]),
    ("empty-role", {"role": ""}, ["role"]),
    ("null-role", {"role": None}, ["role"]),
    ("user-name-with-space", {"user_name": "a b"}, ["user_name"]),
    ("user-name-too-short", {"user_name": "ab"}, ["user_name"]),
    ("null-user-name", {"user_name": None}, ["user_name"]),
    ("extra-field", {"admin": True}, ["admin"]),
    ("extra-user-id", {"user_id": str(uuid.uuid4())}, ["user_id"]),
]


async def test_adding_a_member_refuses_an_invalid_body(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    owner = await new_caller(client)
    organization = await create_organization(client, owner)

    for case, body, loc in INVALID_MEMBERS:
        with subtests.test(case=case):
            response = await _post_member(
                client, owner, organization["id"], {"user_name": owner.name, **body}
            )

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    with subtests.test(case="missing-user-name"):
        response = await _post_member(client, owner, organization["id"], {"role": "member"})

        detail = await assert_validation_error(response)
        assert [item["loc"] for item in detail] == [["user_name"]]
    assert _memberships_of(organization["id"]) == {owner.id: "owner"}


async def test_an_added_member_sees_the_organization_and_its_spaces(
    client: QuartClient,
) -> None:
    owner, member = await new_caller(client), await new_caller(client)
    organization = await create_organization(client, owner)
    space = await create_space(client, owner, organization["id"])
    organization_path = f"/organizations/{organization['id']}"
    space_path = f"/spaces/{space['id']}"
    assert (await client.get(organization_path, headers=member.headers)).status_code == 404
    assert (await client.get(space_path, headers=member.headers)).status_code == 404

    await add_member(client, owner, organization["id"], member)

    organization_response = await client.get(organization_path, headers=member.headers)
    space_response = await client.get(space_path, headers=member.headers)
    spaces = await client.get(
        "/spaces", query_string={"organization_id": organization["id"]}, headers=member.headers
    )
    assert organization_response.status_code == 200
    assert (await organization_response.get_json())["role"] == "member"
    assert space_response.status_code == 200
    assert await space_response.get_json() == space
    assert [s["id"] for s in (await spaces.get_json())["items"]] == [space["id"]]
    assert [o["id"] for o in await _organizations(client, member)] == [organization["id"]]
