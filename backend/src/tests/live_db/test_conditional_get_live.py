"""Conditional reads of a todo on a real database: `If-None-Match` naming the version the
database holds is a 304 (ETag, no body) in the same one statement as a full read; a stale tag
gets the todo; a token that no longer counts, or a todo the caller cannot see, gets no 304.
(How the header is parsed is covered on the fakes, in tests/unit/test_conditional_get.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from app.db.database import Database
from app.db.executor import sent_statements
from tests.conftest import Caller, Team, create_todo

pytestmark = pytest.mark.live_db


async def _get(client: Client, caller: Caller, todo_id: str, if_none_match: str) -> Response:
    headers = {**caller.headers, "If-None-Match": if_none_match}
    return await client.get(f"/todos/{todo_id}", headers=headers)


async def _assert_not_modified(response: Response, version: int) -> None:
    assert response.status_code == 304, await response.get_data(as_text=True)
    assert response.headers["ETag"] == f'"{version}"'
    assert await response.get_data() == b""


@pytest.mark.parametrize(
    "if_none_match",
    [
        pytest.param('"{v}"', id="strong"),
        pytest.param('W/"{v}"', id="weak"),
        pytest.param('"{stale}", W/"{v}"', id="in-a-list"),
        pytest.param("*", id="star"),
    ],
)
async def test_the_current_version_is_304_for_every_member(
    live_client: Client, team: Team, if_none_match: str
) -> None:
    """The version is the todo's, as the database holds it: every reader shares the ETag."""
    todo = await create_todo(live_client, team.owner, team.space_id)
    condition = if_none_match.format(v=todo["version"], stale=todo["version"] - 1)

    for reader in (team.owner, team.member):
        await _assert_not_modified(
            await _get(live_client, reader, todo["id"], condition), todo["version"]
        )


async def test_a_stale_version_gets_the_todo_as_it_is_now(live_client: Client, team: Team) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)
    patched = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "renamed"}, headers=team.owner.headers
    )
    current: dict[str, Any] = await patched.get_json()

    response = await _get(live_client, team.owner, todo["id"], f'"{todo["version"]}"')

    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{todo["version"] + 1}"' == patched.headers["ETag"]
    assert await response.get_json() == current
    await _assert_not_modified(
        await _get(live_client, team.owner, todo["id"], patched.headers["ETag"]),
        todo["version"] + 1,
    )


async def test_a_304_is_one_statement_like_a_full_read(
    live_client: Client, live_database: Database, team: Team
) -> None:
    todo = await create_todo(live_client, team.owner, team.space_id)

    with sent_statements() as not_modified:
        response = await _get(live_client, team.owner, todo["id"], f'"{todo["version"]}"')
    await _assert_not_modified(response, todo["version"])
    with sent_statements() as full:
        read = await live_client.get(f"/todos/{todo['id']}", headers=team.owner.headers)
    assert read.status_code == 200

    assert len(not_modified) == 1
    assert [sql for sql, _ in not_modified] == [sql for sql, _ in full]
    assert "revoked_tokens" in not_modified[0][0]


async def test_no_304_for_a_stranger_or_a_logged_out_token(live_client: Client, team: Team) -> None:
    """The condition is weighed only once the caller may read the todo: never a 304 that
    would tell a stranger the todo exists, or serve a revoked token."""
    todo = await create_todo(live_client, team.owner, team.space_id)
    current = f'"{todo["version"]}"'

    stranger = await _get(live_client, team.stranger, todo["id"], current)
    logout = await live_client.post("/auth/logout", headers=team.member.headers)
    logged_out = await _get(live_client, team.member, todo["id"], current)
    logged_out_star = await _get(live_client, team.member, todo["id"], "*")

    assert stranger.status_code == 404
    assert logout.status_code == 204
    assert logged_out.status_code == logged_out_star.status_code == 401
    assert logged_out.headers["WWW-Authenticate"] == "Bearer"
