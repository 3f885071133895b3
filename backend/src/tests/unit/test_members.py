"""The members of an organization, on FakeDAOs: list them, change a role, remove or leave.

Only members see the list; only owners change roles or remove others; an organization never
loses its last owner; whoever is removed sees nothing of the organization from the next
request on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from tests.conftest import Caller
from tests.unit.assertions import (
    Workspace,
    add_member,
    assert_error,
    assert_validation_error,
    collect_pages,
    create_organization,
    create_todo,
    new_caller,
    new_workspace,
)

MEMBER_FIELDS = {"user_id", "user_name", "role", "joined_at"}


def _path(organization_id: str, member_id: uuid.UUID | str | None = None) -> str:
    path = f"/organizations/{organization_id}/members"
    return path if member_id is None else f"{path}/{member_id}"


async def _members(client: QuartClient, caller: Caller, organization_id: str) -> dict[str, str]:
    """user id -> role, as the caller reads the member list."""
    response = await client.get(_path(organization_id), headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    return {item["user_id"]: item["role"] for item in page["items"]}


async def _change_role(
    client: QuartClient, caller: Caller, organization_id: str, member_id: uuid.UUID | str, role: str
) -> Response:
    return await client.patch(
        _path(organization_id, member_id), json={"role": role}, headers=caller.headers
    )


async def _remove(
    client: QuartClient, caller: Caller, organization_id: str, member_id: uuid.UUID | str
) -> Response:
    return await client.delete(_path(organization_id, member_id), headers=caller.headers)


async def _team(client: QuartClient) -> tuple[Workspace, Caller]:
    """A workspace and a plain member of its organization."""
    workspace = await new_workspace(client)
    member = await new_caller(client)
    await add_member(client, workspace.owner, workspace.organization["id"], member)
    return workspace, member


# List ---------------------------------------------------------------------------------------


async def test_members_list_is_the_same_404_for_outsiders_as_for_an_unknown_id(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    outsider = await new_caller(client)

    hidden = await client.get(_path(workspace.organization["id"]), headers=outsider.headers)
    unknown = await client.get(_path(str(uuid.uuid4())), headers=outsider.headers)

    assert isinstance(await assert_error(hidden, 404), str)
    assert isinstance(await assert_error(unknown, 404), str)
    assert await hidden.get_json() == await unknown.get_json()


INVALID_MEMBER_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("limit-0", {"limit": "0"}, "limit"),
    ("limit-101", {"limit": "101"}, "limit"),
    ("limit-not-a-number", {"limit": "abc"}, "limit"),
    ("cursor-garbage", {"cursor": "%%%garbage%%%"}, "cursor"),
    ("cursor-not-a-keyset", {"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
    ("cursor-too-long", {"cursor": "A" * 201}, "cursor"),
]


async def test_members_list_refuses_an_invalid_limit_or_cursor(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)

    for case, params, field in INVALID_MEMBER_QUERIES:
        with subtests.test(case=case):
            response = await client.get(
                _path(workspace.organization["id"]),
                query_string=params,
                headers=workspace.owner.headers,
            )

            detail = await assert_validation_error(response)
            assert [item["loc"][-1] for item in detail] == [field]


async def test_members_list_shows_every_member_in_the_order_they_joined(
    client: QuartClient,
) -> None:
    owner, first, second = [await new_caller(client) for _ in range(3)]
    organization = await create_organization(client, owner)
    await add_member(client, owner, organization["id"], first, role="owner")
    await add_member(client, owner, organization["id"], second)

    response = await client.get(_path(organization["id"]), headers=second.headers)

    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert page["next_cursor"] is None
    assert [(m["user_id"], m["user_name"], m["role"]) for m in page["items"]] == [
        (str(owner.id), owner.name, "owner"),
        (str(first.id), first.name, "owner"),
        (str(second.id), second.name, "member"),
    ]
    for member in page["items"]:
        assert set(member) == MEMBER_FIELDS
        assert datetime.fromisoformat(member["joined_at"]).utcoffset() is not None
    joined = [datetime.fromisoformat(m["joined_at"]) for m in page["items"]]
    assert joined == sorted(joined)


async def test_members_list_pages_with_limit_and_cursor_in_join_order(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    organization_id = workspace.organization["id"]
    joiners = [await new_caller(client) for _ in range(4)]
    for joiner in joiners:
        await add_member(client, workspace.owner, organization_id, joiner)

    pages = await collect_pages(client, workspace.owner, _path(organization_id), {"limit": 2})

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    walked = [member["user_id"] for page in pages for member in page["items"]]
    assert walked == [str(caller.id) for caller in (workspace.owner, *joiners)]


# Change a role ------------------------------------------------------------------------------


async def test_a_plain_member_cannot_change_roles(client: QuartClient) -> None:
    """Two owners, so that demoting one would keep an owner: the refusal is for the caller."""
    workspace, member = await _team(client)
    co_owner, other = await new_caller(client), await new_caller(client)
    organization_id = workspace.organization["id"]
    await add_member(client, workspace.owner, organization_id, co_owner, role="owner")
    await add_member(client, workspace.owner, organization_id, other)

    promote_self = await _change_role(client, member, organization_id, member.id, "owner")
    promote_other = await _change_role(client, member, organization_id, other.id, "owner")
    demote_owner = await _change_role(client, member, organization_id, co_owner.id, "member")

    for response in (promote_self, promote_other, demote_owner):
        assert isinstance(await assert_error(response, 403), str)
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner",
        str(member.id): "member",
        str(co_owner.id): "owner",
        str(other.id): "member",
    }


async def test_an_outsider_changing_a_role_gets_404(client: QuartClient) -> None:
    workspace, member = await _team(client)
    outsider = await new_caller(client)

    response = await _change_role(
        client, outsider, workspace.organization["id"], member.id, "owner"
    )

    assert isinstance(await assert_error(response, 404), str)
    assert await _members(client, workspace.owner, workspace.organization["id"]) == {
        str(workspace.owner.id): "owner",
        str(member.id): "member",
    }


async def test_changing_the_role_of_someone_who_is_not_a_member_is_404(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    stranger = await new_caller(client)
    organization_id = workspace.organization["id"]

    existing_user = await _change_role(
        client, workspace.owner, organization_id, stranger.id, "owner"
    )
    unknown_user = await _change_role(
        client, workspace.owner, organization_id, uuid.uuid4(), "owner"
    )

    assert isinstance(await assert_error(existing_user, 404), str)
    assert isinstance(await assert_error(unknown_user, 404), str)
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner"
    }


async def test_the_last_owner_cannot_demote_themselves(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    response = await _change_role(
        client, workspace.owner, organization_id, workspace.owner.id, "member"
    )

    assert isinstance(await assert_error(response, 409), str)
    assert await _members(client, member, organization_id) == {
        str(workspace.owner.id): "owner",
        str(member.id): "member",
    }


async def test_the_second_of_two_owners_demoting_each_other_gets_409(
    client: QuartClient,
) -> None:
    """Two owners demoting each other at once run one after the other: the second finds
    itself demoted already, and its request would leave no owner, which API.md makes a 409."""
    workspace, other_owner = await _team(client)
    organization_id = workspace.organization["id"]
    await _change_role(client, workspace.owner, organization_id, other_owner.id, "owner")

    first = await _change_role(client, workspace.owner, organization_id, other_owner.id, "member")
    second = await _change_role(client, other_owner, organization_id, workspace.owner.id, "member")

    assert first.status_code == 200, await first.get_data(as_text=True)
    await assert_error(second, 409)
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner",
        str(other_owner.id): "member",
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"role": "admin"}, id="unknown-role"),
        pytest.param({"role": "OWNER"}, id="uppercase-role"),
        pytest.param({"role": None}, id="null-role"),
        pytest.param({}, id="missing-role"),
        pytest.param({"role": "owner", "user_name": "someone"}, id="extra-field"),
    ],
)
async def test_changing_a_role_refuses_an_invalid_body(
    client: QuartClient, body: dict[str, Any]
) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    response = await client.patch(
        _path(organization_id, member.id), json=body, headers=workspace.owner.headers
    )

    await assert_validation_error(response)
    assert (await _members(client, workspace.owner, organization_id))[str(member.id)] == "member"


async def test_an_owner_promotes_a_member_and_demotes_them_again(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    promoted = await _change_role(client, workspace.owner, organization_id, member.id, "owner")
    as_owner = await _members(client, member, organization_id)
    demoted = await _change_role(client, workspace.owner, organization_id, member.id, "member")

    assert promoted.status_code == 200, await promoted.get_data(as_text=True)
    body = await promoted.get_json()
    assert set(body) == MEMBER_FIELDS
    assert (body["user_id"], body["user_name"], body["role"]) == (
        str(member.id),
        member.name,
        "owner",
    )
    assert as_owner[str(member.id)] == "owner"
    assert demoted.status_code == 200, await demoted.get_data(as_text=True)
    assert (await demoted.get_json())["role"] == "member"
    assert (await _members(client, member, organization_id))[str(member.id)] == "member"


async def test_an_owner_may_step_down_once_another_owner_exists(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]
    await _change_role(client, workspace.owner, organization_id, member.id, "owner")

    response = await _change_role(
        client, workspace.owner, organization_id, workspace.owner.id, "member"
    )

    assert response.status_code == 200, await response.get_data(as_text=True)
    assert await _members(client, member, organization_id) == {
        str(workspace.owner.id): "member",
        str(member.id): "owner",
    }


# Remove or leave ----------------------------------------------------------------------------


async def test_a_plain_member_cannot_remove_another_member(client: QuartClient) -> None:
    workspace, member = await _team(client)
    other = await new_caller(client)
    organization_id = workspace.organization["id"]
    await add_member(client, workspace.owner, organization_id, other)

    removing_a_member = await _remove(client, member, organization_id, other.id)
    removing_the_owner = await _remove(client, member, organization_id, workspace.owner.id)

    assert isinstance(await assert_error(removing_a_member, 403), str)
    assert isinstance(await assert_error(removing_the_owner, 403), str)
    assert set(await _members(client, workspace.owner, organization_id)) == {
        str(workspace.owner.id),
        str(member.id),
        str(other.id),
    }


async def test_an_outsider_removing_a_member_gets_404(client: QuartClient) -> None:
    workspace, member = await _team(client)
    outsider = await new_caller(client)

    response = await _remove(client, outsider, workspace.organization["id"], member.id)

    assert isinstance(await assert_error(response, 404), str)
    assert str(member.id) in await _members(client, workspace.owner, workspace.organization["id"])


async def test_removing_someone_who_is_not_a_member_is_404(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    stranger = await new_caller(client)

    response = await _remove(client, workspace.owner, workspace.organization["id"], stranger.id)

    assert isinstance(await assert_error(response, 404), str)


async def test_the_last_owner_cannot_leave_and_is_told_what_to_do(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    response = await _remove(client, workspace.owner, organization_id, workspace.owner.id)

    detail = await assert_error(response, 409)
    assert isinstance(detail, str)
    assert "owner" in detail.lower()
    assert "delete the organization" in detail.lower()
    assert await _members(client, member, organization_id) == {
        str(workspace.owner.id): "owner",
        str(member.id): "member",
    }


async def test_the_only_member_cannot_leave_either(client: QuartClient) -> None:
    """Leaving would leave an organization without anyone able to delete it."""
    workspace = await new_workspace(client)

    response = await _remove(
        client, workspace.owner, workspace.organization["id"], workspace.owner.id
    )

    await assert_error(response, 409)
    get = await client.get(
        f"/organizations/{workspace.organization['id']}", headers=workspace.owner.headers
    )
    assert get.status_code == 200


async def test_an_owner_removes_a_member(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    response = await _remove(client, workspace.owner, organization_id, member.id)

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner"
    }


async def test_an_owner_removes_another_owner(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]
    await _change_role(client, workspace.owner, organization_id, member.id, "owner")

    response = await _remove(client, workspace.owner, organization_id, member.id)

    assert response.status_code == 204
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner"
    }


async def test_a_member_leaves(client: QuartClient) -> None:
    workspace, member = await _team(client)
    organization_id = workspace.organization["id"]

    response = await _remove(client, member, organization_id, member.id)

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await _members(client, workspace.owner, organization_id) == {
        str(workspace.owner.id): "owner"
    }


@pytest.mark.parametrize("removed_by", ["owner", "themselves"])
async def test_a_removed_member_sees_nothing_of_the_organization(
    client: QuartClient, removed_by: str
) -> None:
    workspace, member = await _team(client)
    organization_id, space_id = workspace.organization["id"], workspace.space["id"]
    own_todo = await create_todo(client, member, space_id)
    owners_todo = await create_todo(client, workspace.owner, space_id)
    remover = workspace.owner if removed_by == "owner" else member
    assert (await _remove(client, remover, organization_id, member.id)).status_code == 204

    for path in (
        f"/organizations/{organization_id}",
        _path(organization_id),
        f"/spaces/{space_id}",
        f"/todos/{own_todo['id']}",
        f"/todos/{owners_todo['id']}",
    ):
        response = await client.get(path, headers=member.headers)
        assert response.status_code == 404, path
    patch = await client.patch(
        f"/todos/{own_todo['id']}", json={"done": True}, headers=member.headers
    )
    post = await client.post(
        "/todos", json={"title": "still here?", "space_id": space_id}, headers=member.headers
    )
    await assert_error(patch, 404)
    await assert_error(post, 404)
    assert await (await client.get("/organizations", headers=member.headers)).get_json() == []
    spaces = await (await client.get("/spaces", headers=member.headers)).get_json()
    todos = await (await client.get("/todos", headers=member.headers)).get_json()
    assert spaces["items"] == todos["items"] == []
    kept = await client.get(f"/todos/{own_todo['id']}", headers=workspace.owner.headers)
    assert kept.status_code == 200
