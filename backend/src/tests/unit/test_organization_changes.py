"""Renaming and deleting organizations and spaces, on FakeDAOs: owners only.

Plain members get 403, outsiders the 404 an unknown id gets. What is deleted is gone for every
caller at once: its own id, everything under it, and every list it was in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from tests.conftest import Caller, unique_name
from tests.unit.assertions import (
    Workspace,
    add_member,
    assert_created,
    assert_error,
    assert_validation_error,
    create_organization,
    create_space,
    create_todo,
    new_caller,
    new_workspace,
)


@dataclass(frozen=True)
class Team:
    """An organization with an owner, a plain member, and a todo of each in its one space."""

    workspace: Workspace
    member: Caller
    todo_ids: list[str]

    @property
    def owner(self) -> Caller:
        return self.workspace.owner

    @property
    def organization_id(self) -> str:
        return str(self.workspace.organization["id"])

    @property
    def space_id(self) -> str:
        return str(self.workspace.space["id"])


@pytest.fixture
async def team(client: QuartClient) -> Team:
    workspace = await new_workspace(client)
    member = await new_caller(client)
    await add_member(client, workspace.owner, workspace.organization["id"], member)
    todos = [
        await create_todo(client, caller, workspace.space["id"])
        for caller in (workspace.owner, member)
    ]
    return Team(workspace, member, [todo["id"] for todo in todos])


async def _get_json(client: QuartClient, caller: Caller, path: str) -> Any:
    response = await client.get(path, headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def _organization_name(client: QuartClient, caller: Caller, organization_id: str) -> str:
    return str((await _get_json(client, caller, f"/organizations/{organization_id}"))["name"])


async def _space_name(client: QuartClient, caller: Caller, space_id: str) -> str:
    return str((await _get_json(client, caller, f"/spaces/{space_id}"))["name"])


async def _rename_organization(
    client: QuartClient, caller: Caller, organization_id: str, body: Any
) -> Response:
    return await client.patch(
        f"/organizations/{organization_id}", json=body, headers=caller.headers
    )


async def _rename_space(client: QuartClient, caller: Caller, space_id: str, body: Any) -> Response:
    return await client.patch(f"/spaces/{space_id}", json=body, headers=caller.headers)


async def _assert_sees_none_of(
    client: QuartClient, caller: Caller, paths: list[str], listed_ids: set[str]
) -> None:
    """Each path is a 404 for the caller, and no id of `listed_ids` is in any of their lists."""
    for path in paths:
        response = await client.get(path, headers=caller.headers)
        assert response.status_code == 404, path
    organizations = await _get_json(client, caller, "/organizations")
    spaces = (await _get_json(client, caller, "/spaces"))["items"]
    todos = (await _get_json(client, caller, "/todos"))["items"]
    assert not {item["id"] for item in organizations + spaces + todos} & listed_ids


INVALID_NAMES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("empty", {"name": ""}, ["name"]),
    ("whitespace-only", {"name": "  \t "}, ["name"]),
    ("101-characters", {"name": "x" * 101}, ["name"]),
    ("nul-character", {"name": "a\x00b"}, ["name"]),
    ("not-a-string", {"name": 42}, ["name"]),
    ("null", {"name": None}, ["name"]),
    ("missing", {}, ["name"]),
    ("extra-field", {"name": "fine", "organization_id": str(uuid.uuid4())}, ["organization_id"]),
]


# Rename an organization ---------------------------------------------------------------------


async def test_a_plain_member_cannot_rename_the_organization(
    team: Team, client: QuartClient
) -> None:
    before = await _organization_name(client, team.owner, team.organization_id)

    response = await _rename_organization(
        client, team.member, team.organization_id, {"name": unique_name("org")}
    )

    assert isinstance(await assert_error(response, 403), str)
    assert await _organization_name(client, team.owner, team.organization_id) == before


async def test_renaming_an_organization_is_the_same_404_for_outsiders_as_for_an_unknown_id(
    team: Team, client: QuartClient
) -> None:
    outsider = await new_caller(client)
    before = await _organization_name(client, team.owner, team.organization_id)

    hidden = await _rename_organization(
        client, outsider, team.organization_id, {"name": unique_name("org")}
    )
    unknown = await _rename_organization(
        client, outsider, str(uuid.uuid4()), {"name": unique_name("org")}
    )

    assert isinstance(await assert_error(hidden, 404), str)
    assert await hidden.get_json() == await unknown.get_json()
    assert await _organization_name(client, team.owner, team.organization_id) == before


async def test_renaming_an_organization_to_a_taken_name_is_409(client: QuartClient) -> None:
    owner = await new_caller(client)
    taken = await create_organization(client, await new_caller(client))
    organization = await create_organization(client, owner)

    response = await _rename_organization(
        client, owner, organization["id"], {"name": taken["name"]}
    )

    assert isinstance(await assert_error(response, 409), str)
    assert await _organization_name(client, owner, organization["id"]) == organization["name"]


async def test_renaming_an_organization_refuses_an_invalid_name(
    team: Team, client: QuartClient, subtests: pytest.Subtests
) -> None:
    before = await _organization_name(client, team.owner, team.organization_id)

    for case, body, loc in INVALID_NAMES:
        with subtests.test(case=case):
            response = await _rename_organization(client, team.owner, team.organization_id, body)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    assert await _organization_name(client, team.owner, team.organization_id) == before


async def test_an_owner_renames_the_organization_for_every_member(
    team: Team, client: QuartClient
) -> None:
    name = unique_name("renamed")

    response = await _rename_organization(
        client, team.owner, team.organization_id, {"name": f"  {name} "}
    )

    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert (body["id"], body["name"], body["role"]) == (team.organization_id, name, "owner")
    assert body["created_at"] == team.workspace.organization["created_at"]
    assert await _organization_name(client, team.member, team.organization_id) == name
    listed = await _get_json(client, team.member, "/organizations")
    assert [(o["id"], o["name"]) for o in listed] == [(team.organization_id, name)]


async def test_an_organizations_old_name_is_free_after_a_rename(
    team: Team, client: QuartClient
) -> None:
    old_name = team.workspace.organization["name"]
    renamed = await _rename_organization(
        client, team.owner, team.organization_id, {"name": unique_name("renamed")}
    )
    assert renamed.status_code == 200

    response = await client.post(
        "/organizations", json={"name": old_name}, headers=team.member.headers
    )

    assert (await assert_created(response))["name"] == old_name


# Delete an organization ---------------------------------------------------------------------


async def test_a_plain_member_cannot_delete_the_organization(
    team: Team, client: QuartClient
) -> None:
    response = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.member.headers
    )

    assert isinstance(await assert_error(response, 403), str)
    for caller in (team.owner, team.member):
        await _get_json(client, caller, f"/organizations/{team.organization_id}")
        await _get_json(client, caller, f"/todos/{team.todo_ids[0]}")


async def test_deleting_an_organization_is_the_same_404_for_outsiders_as_for_an_unknown_id(
    team: Team, client: QuartClient
) -> None:
    outsider = await new_caller(client)

    hidden = await client.delete(f"/organizations/{team.organization_id}", headers=outsider.headers)
    unknown = await client.delete(f"/organizations/{uuid.uuid4()}", headers=outsider.headers)

    assert isinstance(await assert_error(hidden, 404), str)
    assert await hidden.get_json() == await unknown.get_json()
    await _get_json(client, team.owner, f"/organizations/{team.organization_id}")


async def test_a_deleted_organization_is_gone_for_every_former_member(
    team: Team, client: QuartClient
) -> None:
    response = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.owner.headers
    )

    assert response.status_code == 204
    assert await response.get_data() == b""
    paths = [
        f"/organizations/{team.organization_id}",
        f"/organizations/{team.organization_id}/members",
        f"/spaces/{team.space_id}",
        *(f"/todos/{todo_id}" for todo_id in team.todo_ids),
    ]
    listed = {team.organization_id, team.space_id, *team.todo_ids}
    for caller in (team.owner, team.member):
        await _assert_sees_none_of(client, caller, paths, listed)


async def test_a_deleted_organization_cannot_be_changed_any_more(
    team: Team, client: QuartClient
) -> None:
    deleted = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.owner.headers
    )
    assert deleted.status_code == 204

    again = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.owner.headers
    )
    rename = await _rename_organization(
        client, team.owner, team.organization_id, {"name": unique_name("org")}
    )
    new_space = await client.post(
        "/spaces",
        json={"name": "late", "organization_id": team.organization_id},
        headers=team.owner.headers,
    )
    new_todo = await client.post(
        "/todos", json={"title": "late", "space_id": team.space_id}, headers=team.owner.headers
    )
    patch_todo = await client.patch(
        f"/todos/{team.todo_ids[0]}", json={"done": True}, headers=team.owner.headers
    )

    for response in (again, rename, new_space, new_todo, patch_todo):
        await assert_error(response, 404)


async def test_a_deleted_organizations_name_can_be_used_again(
    team: Team, client: QuartClient
) -> None:
    name = team.workspace.organization["name"]
    deleted = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.owner.headers
    )
    assert deleted.status_code == 204
    newcomer = await new_caller(client)

    response = await client.post("/organizations", json={"name": name}, headers=newcomer.headers)

    body = await assert_created(response)
    assert body["name"] == name
    assert body["id"] != team.organization_id


async def test_deleting_an_organization_leaves_the_members_other_organizations_alone(
    team: Team, client: QuartClient
) -> None:
    elsewhere = await new_workspace(client, team.member)
    todo = await create_todo(client, team.member, elsewhere.space["id"])

    deleted = await client.delete(
        f"/organizations/{team.organization_id}", headers=team.owner.headers
    )

    assert deleted.status_code == 204
    listed = await _get_json(client, team.member, "/organizations")
    assert [o["id"] for o in listed] == [elsewhere.organization["id"]]
    todos = (await _get_json(client, team.member, "/todos"))["items"]
    assert [t["id"] for t in todos] == [todo["id"]]


# Rename a space -----------------------------------------------------------------------------


async def test_a_plain_member_cannot_rename_a_space(team: Team, client: QuartClient) -> None:
    response = await _rename_space(client, team.member, team.space_id, {"name": "mine now"})

    assert isinstance(await assert_error(response, 403), str)
    assert await _space_name(client, team.owner, team.space_id) == team.workspace.space["name"]


async def test_renaming_a_space_is_the_same_404_for_outsiders_as_for_an_unknown_id(
    team: Team, client: QuartClient
) -> None:
    outsider = await new_caller(client)

    hidden = await _rename_space(client, outsider, team.space_id, {"name": "mine now"})
    unknown = await _rename_space(client, outsider, str(uuid.uuid4()), {"name": "mine now"})

    assert isinstance(await assert_error(hidden, 404), str)
    assert await hidden.get_json() == await unknown.get_json()
    assert await _space_name(client, team.owner, team.space_id) == team.workspace.space["name"]


async def test_renaming_a_space_refuses_an_invalid_name(
    team: Team, client: QuartClient, subtests: pytest.Subtests
) -> None:
    for case, body, loc in INVALID_NAMES:
        with subtests.test(case=case):
            response = await _rename_space(client, team.owner, team.space_id, body)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    assert await _space_name(client, team.owner, team.space_id) == team.workspace.space["name"]


async def test_an_owner_renames_a_space_for_every_member(team: Team, client: QuartClient) -> None:
    response = await _rename_space(client, team.owner, team.space_id, {"name": " renamed "})

    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body == {**team.workspace.space, "name": "renamed", "updated_at": body["updated_at"]}
    assert await _get_json(client, team.member, f"/spaces/{team.space_id}") == body


# Delete a space -----------------------------------------------------------------------------


async def test_a_plain_member_cannot_delete_a_space(team: Team, client: QuartClient) -> None:
    response = await client.delete(f"/spaces/{team.space_id}", headers=team.member.headers)

    assert isinstance(await assert_error(response, 403), str)
    await _get_json(client, team.member, f"/spaces/{team.space_id}")
    await _get_json(client, team.member, f"/todos/{team.todo_ids[0]}")


async def test_deleting_a_space_is_the_same_404_for_outsiders_as_for_an_unknown_id(
    team: Team, client: QuartClient
) -> None:
    outsider = await new_caller(client)

    hidden = await client.delete(f"/spaces/{team.space_id}", headers=outsider.headers)
    unknown = await client.delete(f"/spaces/{uuid.uuid4()}", headers=outsider.headers)

    assert isinstance(await assert_error(hidden, 404), str)
    assert await hidden.get_json() == await unknown.get_json()
    await _get_json(client, team.owner, f"/spaces/{team.space_id}")


async def test_a_deleted_space_and_its_todos_are_gone_for_every_member(
    team: Team, client: QuartClient
) -> None:
    response = await client.delete(f"/spaces/{team.space_id}", headers=team.owner.headers)

    assert response.status_code == 204
    assert await response.get_data() == b""
    paths = [f"/spaces/{team.space_id}", *(f"/todos/{todo_id}" for todo_id in team.todo_ids)]
    for caller in (team.owner, team.member):
        await _assert_sees_none_of(client, caller, paths, {team.space_id, *team.todo_ids})


async def test_deleting_a_space_keeps_the_organization_and_its_other_spaces(
    team: Team, client: QuartClient
) -> None:
    other = await create_space(client, team.owner, team.organization_id)
    todo = await create_todo(client, team.member, other["id"])

    response = await client.delete(f"/spaces/{team.space_id}", headers=team.owner.headers)

    assert response.status_code == 204
    await _get_json(client, team.member, f"/organizations/{team.organization_id}")
    spaces = (await _get_json(client, team.member, "/spaces"))["items"]
    todos = (await _get_json(client, team.member, "/todos"))["items"]
    assert [s["id"] for s in spaces] == [other["id"]]
    assert [t["id"] for t in todos] == [todo["id"]]


async def test_a_deleted_space_cannot_be_changed_any_more(team: Team, client: QuartClient) -> None:
    deleted = await client.delete(f"/spaces/{team.space_id}", headers=team.owner.headers)
    assert deleted.status_code == 204

    again = await client.delete(f"/spaces/{team.space_id}", headers=team.owner.headers)
    rename = await _rename_space(client, team.owner, team.space_id, {"name": "late"})
    new_todo = await client.post(
        "/todos", json={"title": "late", "space_id": team.space_id}, headers=team.owner.headers
    )

    for response in (again, rename, new_todo):
        await assert_error(response, 404)
