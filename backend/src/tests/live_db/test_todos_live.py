"""Todos on a real database: create, read, change and delete, optimistic concurrency
(`If-Match`) and the version counter. Who may see and change a todo (the author or an owner of
its organization) is test_todo_permissions_live.py.

Every refusal is checked against the persisted row as well, so a refusal that changed the todo
anyway would fail here.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from tests.conftest import Team, create_todo, stored_todo

pytestmark = pytest.mark.live_db


async def test_create_answers_201_with_location_and_etag(live_client: Client, team: Team) -> None:
    response = await live_client.post(
        "/todos",
        json={"title": "buy milk", "content": "2 litres", "space_id": team.space_id},
        headers=team.member.headers,
    )

    assert response.status_code == 201
    todo = await response.get_json()
    assert set(todo) == {
        "id",
        "title",
        "content",
        "done",
        "space_id",
        "user_id",
        "created_at",
        "updated_at",
        "version",
    }
    assert todo["title"] == "buy milk"
    assert todo["content"] == "2 litres"
    assert todo["done"] is False
    assert todo["space_id"] == team.space_id
    assert todo["user_id"] == str(team.member.id)
    assert todo["version"] == 1
    assert todo["updated_at"] == todo["created_at"]
    uuid.UUID(todo["id"])
    for stamp in ("created_at", "updated_at"):
        assert _timestamp(todo[stamp]).utcoffset() is not None
    assert response.headers["Location"] == f"/todos/{todo['id']}"
    assert response.headers["ETag"] == '"1"'

    fetched = await live_client.get(response.headers["Location"], headers=team.owner.headers)

    assert fetched.status_code == 200
    assert await fetched.get_json() == todo
    assert fetched.headers["ETag"] == '"1"'


async def test_create_with_done_and_default_content(live_client: Client, team: Team) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id, done=True)

    assert todo["done"] is True
    assert todo["content"] == ""


async def test_if_match_of_the_current_version_succeeds(live_client: Client, team: Team) -> None:
    forms = ['"1"', "1", 'W/"1"', '"5", "1"', " * "]
    outcomes = {}
    for if_match in forms:
        todo = await create_todo(live_client, team.owner, team.space_id)
        response = await live_client.patch(
            f"/todos/{todo['id']}",
            json={"content": "checked"},
            headers={**team.owner.headers, "If-Match": if_match},
        )
        outcomes[if_match] = (response.status_code, (await response.get_json()).get("version"))

    assert outcomes == dict.fromkeys(forms, (200, 2))


async def test_stale_if_match_is_412_and_the_row_is_unchanged(
    live_client: Client, live_database: Database, team: Team
) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)
    first = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "first"}, headers=team.owner.headers
    )
    assert first.status_code == 200

    stale = await live_client.patch(
        f"/todos/{todo['id']}",
        json={"title": "second", "done": True},
        headers={**team.owner.headers, "If-Match": '"1"'},
    )

    assert stale.status_code == 412
    assert isinstance((await stale.get_json())["detail"], str)
    stored = await stored_todo(live_database, todo["id"])
    assert stored is not None
    assert (stored.title, stored.done, stored.version) == ("first", False, 2)
    assert stored.updated_at == _timestamp((await first.get_json())["updated_at"])


async def test_a_version_beyond_the_column_is_stale_not_an_error(
    live_client: Client, live_database: Database, team: Team
) -> None:
    """Versions are 32-bit integers: a larger tag reaches the database as no value at all."""
    todo = await create_todo(live_client, team.owner, team.space_id)

    for huge in (str(2**31), "9" * 30):
        for method in ("PATCH", "DELETE"):
            response = await live_client.open(
                f"/todos/{todo['id']}",
                method=method,
                json={"title": "changed"},
                headers={**team.owner.headers, "If-Match": huge},
            )
            assert response.status_code == 412, (method, huge)
    stored = await stored_todo(live_database, todo["id"])
    assert stored is not None
    assert (stored.title, stored.version) == (todo["title"], 1)


async def test_version_grows_by_one_per_successful_patch_only(
    live_client: Client, team: Team
) -> None:
    todo = await create_todo(live_client, team.member, team.space_id)
    url = f"/todos/{todo['id']}"
    versions, updated = [todo["version"]], [todo["updated_at"]]

    for step in range(4):
        ok = await live_client.patch(
            url, json={"title": f"step {step}"}, headers=team.member.headers
        )
        stale = await live_client.patch(
            url, json={"title": "stale"}, headers={**team.member.headers, "If-Match": '"1"'}
        )
        hidden = await live_client.patch(url, json={"done": True}, headers=team.stranger.headers)
        by_owner = await live_client.patch(url, json={"done": True}, headers=team.owner.headers)
        assert (ok.status_code, stale.status_code, hidden.status_code) == (200, 412, 404)
        assert by_owner.status_code == 200  # an owner's change counts too
        for changed in (await ok.get_json(), await by_owner.get_json()):
            versions.append(changed["version"])
            updated.append(changed["updated_at"])

    assert versions == list(range(1, 10))
    timestamps = [_timestamp(value) for value in updated]
    assert timestamps == sorted(timestamps)
    assert len(set(timestamps)) == len(timestamps)  # updated_at advances with every change
    final = await (await live_client.get(url, headers=team.member.headers)).get_json()
    assert final["version"] == 9
    assert final["created_at"] == todo["created_at"]


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_delete_is_204_then_everything_is_404(
    live_client: Client, live_database: Database, team: Team
) -> None:
    todo = await create_todo(live_client, team.member, team.space_id)
    kept = await create_todo(live_client, team.member, team.space_id)
    url = f"/todos/{todo['id']}"

    stale = await live_client.delete(url, headers={**team.member.headers, "If-Match": '"2"'})
    assert stale.status_code == 412
    assert await stored_todo(live_database, todo["id"]) is not None

    deleted = await live_client.delete(url, headers={**team.member.headers, "If-Match": '"1"'})

    assert deleted.status_code == 204
    assert await deleted.get_data() == b""
    assert (await live_client.get(url, headers=team.member.headers)).status_code == 404
    patch = await live_client.patch(url, json={"title": "x"}, headers=team.member.headers)
    assert patch.status_code == 404
    assert (await live_client.delete(url, headers=team.member.headers)).status_code == 404
    assert await stored_todo(live_database, todo["id"]) is None
    listed = await live_client.get(
        "/todos", query_string={"space_id": team.space_id}, headers=team.member.headers
    )
    assert [item["id"] for item in (await listed.get_json())["items"]] == [kept["id"]]


async def test_malformed_ids_in_paths_are_404(live_client: Client, team: Team) -> None:
    requests = [
        ("GET", "/todos/not-a-uuid"),
        ("PATCH", "/todos/not-a-uuid"),
        ("DELETE", "/todos/not-a-uuid"),
        ("GET", "/todos/12345"),
        ("GET", "/todos/0"),
        ("GET", "/todos/%27%20OR%201=1--"),
        ("GET", "/todos/00000000-0000-0000-0000-00000000000g"),
        ("GET", f"/todos/{team.space_id}x"),
        ("GET", "/todos/%00"),
        ("GET", "/spaces/abc"),
        ("GET", "/organizations/abc"),
        ("POST", "/organizations/abc/members"),
    ]
    outcomes = {}
    for method, path in requests:
        response = await live_client.open(
            path,
            method=method,
            json={"title": "x", "user_name": "abc"},
            headers=team.owner.headers,
        )
        outcomes[method, path] = (response.status_code, set(await response.get_json()))

    assert outcomes == dict.fromkeys(requests, (404, {"detail"}))


async def test_list_done_filter_follows_patches(live_client: Client, team: Team) -> None:
    open_todo = await create_todo(live_client, team.owner, team.space_id)
    closed = await create_todo(live_client, team.owner, team.space_id)
    response = await live_client.patch(
        f"/todos/{closed['id']}", json={"done": True}, headers=team.owner.headers
    )
    assert response.status_code == 200

    async def ids(**query: str) -> list[str]:
        page = await live_client.get(
            "/todos", query_string={"space_id": team.space_id, **query}, headers=team.member.headers
        )
        assert page.status_code == 200
        return [item["id"] for item in (await page.get_json())["items"]]

    assert await ids(done="true") == [closed["id"]]
    assert await ids(done="false") == [open_todo["id"]]
    assert await ids() == [closed["id"], open_todo["id"]]
