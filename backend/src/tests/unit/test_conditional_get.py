"""Conditional reads of a todo, on FakeDAOs: `If-None-Match` naming the current version is a
304 with the ETag and no body; anything else is the full 200.

A condition never changes who may see what: a todo the caller cannot see is a 404, and a
token that no longer counts a 401, whatever the header says.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from tests.conftest import Caller
from tests.unit.assertions import (
    Workspace,
    assert_error,
    assert_unauthorized,
    create_todo,
    new_caller,
    new_workspace,
)


@pytest.fixture
async def workspace(client: QuartClient) -> Workspace:
    return await new_workspace(client)


@pytest.fixture
async def todo(client: QuartClient, workspace: Workspace) -> dict[str, Any]:
    return await create_todo(client, workspace.owner, workspace.space["id"], content="details")


async def _get(client: QuartClient, caller: Caller, todo_id: str, if_none_match: str) -> Response:
    return await client.get(
        f"/todos/{todo_id}", headers={**caller.headers, "If-None-Match": if_none_match}
    )


async def _assert_not_modified(response: Response, version: int) -> None:
    assert response.status_code == 304, await response.get_data(as_text=True)
    assert response.headers.get("ETag") == f'"{version}"'
    assert await response.get_data() == b""


async def _assert_full(response: Response, todo: dict[str, Any]) -> None:
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.headers.get("ETag") == f'"{todo["version"]}"'
    assert await response.get_json() == todo


# Refusals come before any condition ---------------------------------------------------------


async def test_a_todo_the_caller_cannot_see_is_404_whatever_the_condition(
    client: QuartClient, todo: dict[str, Any]
) -> None:
    outsider = await new_caller(client)

    for todo_id in (todo["id"], str(uuid.uuid4())):
        for if_none_match in ("*", '"1"'):
            response = await _get(client, outsider, todo_id, if_none_match)
            assert isinstance(await assert_error(response, 404), str)
            assert "ETag" not in response.headers


async def test_a_logged_out_token_is_401_not_304(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any]
) -> None:
    logout = await client.post("/auth/logout", headers=workspace.owner.headers)
    assert logout.status_code == 204

    response = await _get(client, workspace.owner, todo["id"], "*")

    await assert_unauthorized(response)


# Not matching: the full answer --------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    [
        pytest.param('"2"', id="a-later-version"),
        pytest.param('"0"', id="an-earlier-version"),
        pytest.param('"0", W/"2"', id="a-list-without-it"),
        pytest.param('"11"', id="a-version-that-starts-with-it"),
        pytest.param("garbage", id="garbage"),
        pytest.param('"one"', id="a-word"),
        pytest.param('""', id="an-empty-tag"),
        pytest.param("W/", id="a-bare-weak-prefix"),
        pytest.param(",", id="an-empty-list"),
    ],
)
async def test_if_none_match_without_the_current_version_answers_the_todo(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any], if_none_match: str
) -> None:
    response = await _get(client, workspace.owner, todo["id"], if_none_match)

    await _assert_full(response, todo)


async def test_after_a_change_the_old_etag_answers_the_new_todo(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any]
) -> None:
    old_etag = f'"{todo["version"]}"'
    patched = await client.patch(
        f"/todos/{todo['id']}", json={"done": True}, headers=workspace.owner.headers
    )
    assert patched.status_code == 200
    current = await patched.get_json()

    response = await _get(client, workspace.owner, todo["id"], old_etag)

    await _assert_full(response, current)
    assert current["version"] == todo["version"] + 1


# Matching: 304 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    [
        pytest.param('"{v}"', id="strong"),
        pytest.param('W/"{v}"', id="weak"),
        pytest.param('"7", "{v}"', id="in-a-list"),
        pytest.param('W/"7",W/"{v}"', id="in-a-weak-list-without-spaces"),
        pytest.param('  "{v}"\t', id="padded"),
        pytest.param("*", id="star"),
    ],
)
async def test_if_none_match_naming_the_current_version_is_304(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any], if_none_match: str
) -> None:
    response = await _get(
        client, workspace.owner, todo["id"], if_none_match.format(v=todo["version"])
    )

    await _assert_not_modified(response, todo["version"])


async def test_any_member_gets_304_for_the_current_version(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any]
) -> None:
    """The version is the todo's, not the reader's: every reader shares the ETag."""
    member = await new_caller(client)
    added = await client.post(
        f"/organizations/{workspace.organization['id']}/members",
        json={"user_name": member.name},
        headers=workspace.owner.headers,
    )
    assert added.status_code == 201

    response = await _get(client, member, todo["id"], f'"{todo["version"]}"')

    await _assert_not_modified(response, todo["version"])


async def test_after_a_change_the_new_etag_is_304(
    client: QuartClient, workspace: Workspace, todo: dict[str, Any]
) -> None:
    patched = await client.patch(
        f"/todos/{todo['id']}", json={"title": "renamed"}, headers=workspace.owner.headers
    )
    assert patched.status_code == 200
    new_etag = patched.headers["ETag"]

    response = await _get(client, workspace.owner, todo["id"], new_etag)

    await _assert_not_modified(response, todo["version"] + 1)
