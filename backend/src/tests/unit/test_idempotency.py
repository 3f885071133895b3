"""`Idempotency-Key` on every POST that creates: a retry replays the first answer.

Each route is checked the same way: the replay has the first status, body and headers plus
`Idempotent-Replayed: true`, and the list endpoint shows one resource, not two. Failures are
not remembered, and an expired key starts afresh. That keys belong to a user, and retries that
race each other, are checked on a real database in test_idempotency_live.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient

from tests import fakes
from tests.conftest import unique_name
from tests.unit.assertions import (
    Caller,
    Workspace,
    add_member,
    assert_created,
    assert_validation_error,
    create_organization,
    new_caller,
    new_workspace,
)

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_LOC = ["header", KEY]


@dataclass(frozen=True)
class Scene:
    workspace: Workspace
    newcomer: Caller | None
    """A registered user outside the organization, for the members route."""

    @property
    def owner(self) -> Caller:
        return self.workspace.owner


async def _count_organizations(client: QuartClient, scene: Scene, body: dict[str, Any]) -> int:
    response = await client.get("/organizations", headers=scene.owner.headers)
    return sum(o["name"] == body["name"] for o in await response.get_json())


async def _count_spaces(client: QuartClient, scene: Scene, body: dict[str, Any]) -> int:
    response = await client.get(
        "/spaces",
        query_string={"organization_id": body["organization_id"], "limit": 100},
        headers=scene.owner.headers,
    )
    return sum(s["name"] == body["name"] for s in (await response.get_json())["items"])


async def _count_todos(client: QuartClient, scene: Scene, body: dict[str, Any]) -> int:
    response = await client.get(
        "/todos",
        query_string={"space_id": body["space_id"], "limit": 100},
        headers=scene.owner.headers,
    )
    return sum(t["title"] == body["title"] for t in (await response.get_json())["items"])


async def _count_memberships(client: QuartClient, scene: Scene, body: dict[str, Any]) -> int:
    """How often the newcomer is in the organization, as the newcomer's own list shows it."""
    assert scene.newcomer is not None
    assert body["user_name"] == scene.newcomer.name
    response = await client.get("/organizations", headers=scene.newcomer.headers)
    organization_id = scene.workspace.organization["id"]
    return sum(o["id"] == organization_id for o in await response.get_json())


@dataclass(frozen=True)
class Route:
    name: str
    path: Callable[[Scene], str]
    body: Callable[[Scene], dict[str, Any]]
    other_body: Callable[[Scene], dict[str, Any]]
    count: Callable[[QuartClient, Scene, dict[str, Any]], Awaitable[int]]
    headers: tuple[str, ...]
    """The response headers a replay must repeat."""


ROUTES = [
    Route(
        "organizations",
        lambda scene: "/organizations",
        lambda scene: {"name": f"org-{scene.owner.name}"},
        lambda scene: {"name": f"other-{scene.owner.name}"},
        _count_organizations,
        ("Location",),
    ),
    Route(
        "spaces",
        lambda scene: "/spaces",
        lambda scene: {"name": "inbox", "organization_id": scene.workspace.organization["id"]},
        lambda scene: {"name": "outbox", "organization_id": scene.workspace.organization["id"]},
        _count_spaces,
        ("Location",),
    ),
    Route(
        "todos",
        lambda scene: "/todos",
        lambda scene: {"title": "buy milk", "space_id": scene.workspace.space["id"]},
        lambda scene: {"title": "buy bread", "space_id": scene.workspace.space["id"]},
        _count_todos,
        ("Location", "ETag"),
    ),
    Route(
        "members",
        lambda scene: f"/organizations/{scene.workspace.organization['id']}/members",
        lambda scene: {"user_name": _newcomer(scene).name, "role": "member"},
        lambda scene: {"user_name": _newcomer(scene).name, "role": "owner"},
        _count_memberships,
        (),
    ),
]
ROUTE_PARAMS = [pytest.param(route, id=route.name) for route in ROUTES]


def _newcomer(scene: Scene) -> Caller:
    assert scene.newcomer is not None
    return scene.newcomer


async def _scene(client: QuartClient, route: Route) -> Scene:
    workspace = await new_workspace(client)
    newcomer = await new_caller(client) if route.name == "members" else None
    return Scene(workspace=workspace, newcomer=newcomer)


async def _post(client: QuartClient, caller: Caller, path: str, body: Any, key: str | None) -> Any:
    headers = caller.headers if key is None else {**caller.headers, KEY: key}
    return await client.post(path, json=body, headers=headers)


def _key() -> str:
    return f"key-{uuid.uuid4()}"


# Every creating route -----------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_retry_with_the_same_key_replays_the_first_response(
    client: QuartClient, route: Route
) -> None:
    scene = await _scene(client, route)
    path, body, key = route.path(scene), route.body(scene), _key()

    first = await _post(client, scene.owner, path, body, key)
    retry = await _post(client, scene.owner, path, body, key)

    first_body = await assert_created(first)
    assert REPLAYED not in first.headers
    assert retry.status_code == first.status_code
    assert await retry.get_json() == first_body
    assert retry.headers.get(REPLAYED) == "true"
    for header in route.headers:
        assert header in first.headers
        assert retry.headers.get(header) == first.headers.get(header)
    assert await route.count(client, scene, body) == 1


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_a_retry_once_the_organization_is_deleted_is_its_404_not_a_replay(
    client: QuartClient, route: Route
) -> None:
    scene = await _scene(client, route)
    path, body, key = route.path(scene), route.body(scene), _key()
    created = await assert_created(await _post(client, scene.owner, path, body, key))
    organization_id = (
        created["id"] if route.name == "organizations" else scene.workspace.organization["id"]
    )
    deleted = await client.delete(f"/organizations/{organization_id}", headers=scene.owner.headers)
    assert deleted.status_code == 204

    retry = await _post(client, scene.owner, path, body, key)

    assert retry.status_code == 404, await retry.get_data(as_text=True)
    assert REPLAYED not in retry.headers


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_the_same_key_with_another_body_is_422_and_creates_nothing(
    client: QuartClient, route: Route
) -> None:
    scene = await _scene(client, route)
    path, body, other, key = route.path(scene), route.body(scene), route.other_body(scene), _key()
    await assert_created(await _post(client, scene.owner, path, body, key))

    response = await _post(client, scene.owner, path, other, key)

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [KEY_LOC]
    assert REPLAYED not in response.headers
    assert await route.count(client, scene, body) == 1
    if route.name != "members":  # the same user with another role: counted above
        assert await route.count(client, scene, other) == 0


INVALID_KEYS = [
    ("empty", ""),
    ("256-characters", "k" * 256),
    ("inner-space", "my key"),
    ("tab", "my\tkey"),
    ("latin-1", "clé"),
    ("non-latin-1", "ключ"),
]


@pytest.mark.parametrize("route", ROUTE_PARAMS)
async def test_an_invalid_key_is_422_and_creates_nothing(
    client: QuartClient, route: Route, subtests: pytest.Subtests
) -> None:
    scene = await _scene(client, route)
    path, body = route.path(scene), route.body(scene)

    for case, key in INVALID_KEYS:
        with subtests.test(case=case):
            response = await _post(client, scene.owner, path, body, key)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [KEY_LOC]
    assert await route.count(client, scene, body) == 0
    assert fakes.FakeIdempotencyKeyDAO.rows == {}


# Keys, users and time -----------------------------------------------------------------------


async def test_keys_of_1_and_255_visible_characters_are_accepted(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    body = {"title": "edge", "space_id": workspace.space["id"]}

    for key in ("!", "~" * 255):
        first = await _post(client, workspace.owner, "/todos", body, key)
        retry = await _post(client, workspace.owner, "/todos", body, key)

        assert (await assert_created(first))["id"] == (await assert_created(retry))["id"]
        assert retry.headers.get(REPLAYED) == "true"
    assert len(fakes.FakeTodoDAO.rows) == 2


async def test_without_a_key_every_post_creates(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    body = {"title": "twice", "space_id": workspace.space["id"]}

    first = await assert_created(await _post(client, workspace.owner, "/todos", body, None))
    second = await assert_created(await _post(client, workspace.owner, "/todos", body, None))

    assert first["id"] != second["id"]
    assert fakes.FakeIdempotencyKeyDAO.rows == {}


async def test_a_key_used_on_one_route_is_refused_on_another(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    key = _key()
    organization = await assert_created(
        await _post(client, workspace.owner, "/organizations", {"name": unique_name("org")}, key)
    )

    response = await _post(
        client,
        workspace.owner,
        "/spaces",
        {"name": "inbox", "organization_id": organization["id"]},
        key,
    )

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [KEY_LOC]
    assert not any(s.name == "inbox" for s in fakes.FakeSpaceDAO.rows.values())


async def test_a_replay_is_the_first_response_even_after_the_todo_changed(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    body, key = {"title": "original", "space_id": workspace.space["id"]}, _key()
    first = await assert_created(await _post(client, workspace.owner, "/todos", body, key))
    patched = await client.patch(
        f"/todos/{first['id']}", json={"title": "changed"}, headers=workspace.owner.headers
    )
    assert patched.status_code == 200

    retry = await _post(client, workspace.owner, "/todos", body, key)

    assert retry.status_code == 201
    assert await retry.get_json() == first
    assert retry.headers.get("ETag") == '"1"'
    assert len(fakes.FakeTodoDAO.rows) == 1


async def test_a_failed_attempt_is_not_remembered(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    latecomer = await new_caller(client)
    body, key = {"title": "too early", "space_id": workspace.space["id"]}, _key()

    refused = await _post(client, latecomer, "/todos", body, key)
    await add_member(client, workspace.owner, workspace.organization["id"], latecomer)
    retried = await _post(client, latecomer, "/todos", body, key)
    replayed = await _post(client, latecomer, "/todos", body, key)

    assert refused.status_code == 404
    created = await assert_created(retried)
    assert REPLAYED not in retried.headers
    assert created["user_id"] == str(latecomer.id)
    assert replayed.headers.get(REPLAYED) == "true"
    assert (await replayed.get_json())["id"] == created["id"]
    assert len(fakes.FakeTodoDAO.rows) == 1


async def test_a_conflict_is_not_remembered_either(client: QuartClient) -> None:
    caller = await new_caller(client)
    taken = (await create_organization(client, caller))["name"]
    key = _key()

    conflict = await _post(client, caller, "/organizations", {"name": taken}, key)
    fresh_name = unique_name("org")
    created = await _post(client, caller, "/organizations", {"name": fresh_name}, key)

    assert conflict.status_code == 409
    assert (await assert_created(created))["name"] == fresh_name
    assert REPLAYED not in created.headers


def _expire_every_key() -> None:
    for row in fakes.FakeIdempotencyKeyDAO.rows.values():
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)


async def test_an_expired_key_can_be_used_again_and_creates_anew(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    body, key = {"title": "again", "space_id": workspace.space["id"]}, _key()
    first = await assert_created(await _post(client, workspace.owner, "/todos", body, key))
    _expire_every_key()

    again = await _post(client, workspace.owner, "/todos", body, key)

    second = await assert_created(again)
    assert REPLAYED not in again.headers
    assert second["id"] != first["id"]
    assert again.headers.get("Location") == f"/todos/{second['id']}"
    scene = Scene(workspace=workspace, newcomer=None)
    assert await _count_todos(client, scene, body) == 2
    replay = await _post(client, workspace.owner, "/todos", body, key)
    assert (await replay.get_json())["id"] == second["id"]
    assert replay.headers.get(REPLAYED) == "true"


async def test_a_key_is_kept_for_the_configured_time(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    ttl = client.app.extensions["settings"].idempotency_ttl_seconds
    before = datetime.now(UTC)

    await assert_created(
        await _post(
            client,
            workspace.owner,
            "/todos",
            {"title": "kept", "space_id": workspace.space["id"]},
            _key(),
        )
    )

    (row,) = fakes.FakeIdempotencyKeyDAO.rows.values()
    assert before + timedelta(seconds=ttl) <= row.expires_at
    assert row.expires_at <= datetime.now(UTC) + timedelta(seconds=ttl)
