"""A deleted user's unexpired token is refused by every route, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from tests.conftest import Team, create_todo, unique_name
from tests.sql import delete_user

pytestmark = pytest.mark.live_db


async def test_every_route_refuses_the_token_of_a_deleted_user(
    live_client: Client, live_database: Database, team: Team
) -> None:
    owner = team.owner
    todo = await create_todo(live_client, owner, team.space_id)
    organization, space = team.organization_id, team.space_id
    assert await delete_user(live_database, owner.id)

    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/me", None),
        ("GET", "/organizations", None),
        ("POST", "/organizations", {"name": unique_name("org")}),
        ("GET", f"/organizations/{organization}", None),
        ("POST", f"/organizations/{organization}/members", {"user_name": team.member.name}),
        ("GET", "/spaces", None),
        ("GET", f"/spaces?organization_id={organization}", None),
        ("POST", "/spaces", {"name": "later", "organization_id": organization}),
        ("GET", f"/spaces/{space}", None),
        ("GET", "/todos", None),
        ("GET", f"/todos?space_id={space}", None),
        ("POST", "/todos", {"title": "after", "space_id": space}),
        ("GET", f"/todos/{todo['id']}", None),
        ("PATCH", f"/todos/{todo['id']}", {"done": True}),
        ("DELETE", f"/todos/{todo['id']}", None),
    ]
    for method, path, body in requests:
        response = await live_client.open(path, method=method, json=body, headers=owner.headers)
        assert response.status_code == 401, (method, path, await response.get_data(as_text=True))
        assert (await response.get_json())["detail"]
        assert response.headers["WWW-Authenticate"] == "Bearer"

    # The refused requests changed nothing: the member still sees the one organization.
    response = await live_client.get("/organizations", headers=team.member.headers)
    assert [o["id"] for o in await response.get_json()] == [organization]


async def test_a_user_who_sees_nothing_still_gets_empty_lists(
    live_client: Client, team: Team
) -> None:
    empty_page = {"items": [], "next_cursor": None}
    for path, empty in (("/organizations", []), ("/spaces", empty_page), ("/todos", empty_page)):
        response = await live_client.get(path, headers=team.stranger.headers)
        assert response.status_code == 200, path
        assert await response.get_json() == empty, path
