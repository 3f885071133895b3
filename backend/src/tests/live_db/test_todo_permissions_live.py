"""Who may do what to a todo, on a real database: its author and the owners of its organization
may change and delete it, another member gets a 403, and a non-member gets exactly the 404 of an
id that does not exist (any other answer would tell them the todo is there).

Every refusal is checked against the persisted row as well, so a 403 or 404 that changed the
todo anyway would fail here.
"""

from __future__ import annotations

import uuid

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from tests.conftest import Team, create_todo, stored_todo, todo_count

pytestmark = pytest.mark.live_db


async def test_create_in_unknown_or_foreign_space_is_404(
    live_client: Client, live_database: Database, team: Team
) -> None:
    unknown = await live_client.post(
        "/todos", json={"title": "t", "space_id": str(uuid.uuid4())}, headers=team.owner.headers
    )
    foreign = await live_client.post(
        "/todos", json={"title": "t", "space_id": team.space_id}, headers=team.stranger.headers
    )

    assert unknown.status_code == foreign.status_code == 404
    assert isinstance((await foreign.get_json())["detail"], str)
    assert await unknown.get_json() == await foreign.get_json()
    assert await todo_count(live_database, team.space_id) == 0


async def test_get_by_stranger_is_the_same_404_as_an_unknown_id(
    live_client: Client, team: Team
) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)

    hidden = await live_client.get(f"/todos/{todo['id']}", headers=team.stranger.headers)
    unknown = await live_client.get(f"/todos/{uuid.uuid4()}", headers=team.stranger.headers)

    assert hidden.status_code == unknown.status_code == 404
    assert isinstance((await hidden.get_json())["detail"], str)
    assert await hidden.get_json() == await unknown.get_json()
    assert "ETag" not in hidden.headers


@pytest.mark.parametrize("who", ["author", "owner"])
async def test_author_and_owner_may_patch(live_client: Client, team: Team, who: str) -> None:
    todo = await create_todo(live_client, team.member, team.space_id)
    caller = team.member if who == "author" else team.owner

    response = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "renamed", "done": True}, headers=caller.headers
    )

    assert response.status_code == 200
    changed = await response.get_json()
    assert changed["title"] == "renamed"
    assert changed["done"] is True
    assert changed["content"] == todo["content"]
    assert changed["user_id"] == str(team.member.id)  # the author stays the author
    assert changed["created_at"] == todo["created_at"]
    assert changed["version"] == 2
    assert response.headers["ETag"] == '"2"'
    fetched = await live_client.get(f"/todos/{todo['id']}", headers=team.member.headers)
    assert await fetched.get_json() == changed


async def test_other_member_gets_403_and_the_todo_is_unchanged(
    live_client: Client, live_database: Database, team: Team
) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)

    patch = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "hijacked"}, headers=team.member.headers
    )
    delete = await live_client.delete(f"/todos/{todo['id']}", headers=team.member.headers)

    assert patch.status_code == delete.status_code == 403
    for refused in (patch, delete):
        assert isinstance((await refused.get_json())["detail"], str)
    stored = await stored_todo(live_database, todo["id"])
    assert stored is not None
    assert (stored.title, stored.version) == (todo["title"], 1)


async def test_non_member_gets_404_for_changes_and_the_todo_is_unchanged(
    live_client: Client, live_database: Database, team: Team
) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)

    patch = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "hijacked"}, headers=team.stranger.headers
    )
    patch_unknown = await live_client.patch(
        f"/todos/{uuid.uuid4()}", json={"title": "hijacked"}, headers=team.stranger.headers
    )
    delete = await live_client.delete(f"/todos/{todo['id']}", headers=team.stranger.headers)
    delete_unknown = await live_client.delete(
        f"/todos/{uuid.uuid4()}", headers=team.stranger.headers
    )
    stale_delete = await live_client.delete(
        f"/todos/{todo['id']}", headers={**team.stranger.headers, "If-Match": '"7"'}
    )

    assert patch.status_code == patch_unknown.status_code == 404
    assert delete.status_code == stale_delete.status_code == 404  # not 412: that would leak
    assert delete_unknown.status_code == 404
    assert await patch.get_json() == await patch_unknown.get_json()
    assert await delete.get_json() == await delete_unknown.get_json()
    stored = await stored_todo(live_database, todo["id"])
    assert stored is not None
    assert (stored.title, stored.version) == (todo["title"], 1)


async def test_owner_may_delete_a_members_todo(live_client: Client, team: Team) -> None:
    todo = await create_todo(live_client, team.member, team.space_id)

    response = await live_client.delete(f"/todos/{todo['id']}", headers=team.owner.headers)

    assert response.status_code == 204
    assert (
        await live_client.get(f"/todos/{todo['id']}", headers=team.member.headers)
    ).status_code == 404
