"""Requests racing each other on a real database at SERIALIZABLE: no lost update, no duplicate,
and no 5xx; the losers of a conflict are retried (SQLSTATE 40001) or told precisely why not.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from app.db.executor import Executor
from app.models import MembershipDAO, Role, UserDAO
from tests.conftest import Caller, new_caller, stored_todo, todo_count, unique_name

pytestmark = pytest.mark.live_db


async def _users(database: Database, count: int) -> list[str]:
    """Names of `count` new users who never log in."""
    names = [unique_name() for _ in range(count)]

    async def create(session: Executor) -> None:
        for name in names:
            assert await UserDAO.create(session, name, "unused-password-hash") is not None

    await database.run(create)
    return names


@dataclass(frozen=True)
class Setup:
    owner: Caller
    organization_id: str
    space_id: str
    todo: dict[str, Any]


@pytest.fixture
async def setup(live_client: Client, live_database: Database) -> Setup:
    owner = await new_caller(live_database)
    organization = await live_client.post(
        "/organizations", json={"name": unique_name("org")}, headers=owner.headers
    )
    organization_id = (await organization.get_json())["id"]
    space = await live_client.post(
        "/spaces", json={"name": "inbox", "organization_id": organization_id}, headers=owner.headers
    )
    space_id = (await space.get_json())["id"]
    todo = await live_client.post(
        "/todos", json={"title": "contended", "space_id": space_id}, headers=owner.headers
    )
    assert (organization.status_code, space.status_code, todo.status_code) == (201, 201, 201)
    return Setup(owner, organization_id, space_id, await todo.get_json())


def _statuses(responses: list[Any]) -> list[int]:
    return sorted(response.status_code for response in responses)


async def test_concurrent_patches_lose_no_update(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    url = f"/todos/{setup.todo['id']}"
    titles = [f"title {number}" for number in range(20)]
    retries_before = live_database.stats.retries

    responses = await asyncio.gather(
        *(live_client.patch(url, json={"title": t}, headers=setup.owner.headers) for t in titles)
    )

    retries = live_database.stats.retries - retries_before
    print(f"20 concurrent PATCHes: {retries} serialization retries")
    bodies = [await response.get_json() for response in responses]
    assert _statuses(responses) == [200] * 20, bodies
    # Every change saw the one before it: the versions handed out are 2..21, each once.
    assert sorted(body["version"] for body in bodies) == list(range(2, 22))
    final = await (await live_client.get(url, headers=setup.owner.headers)).get_json()
    assert final["version"] == 1 + 20
    last = next(body for body in bodies if body["version"] == 21)
    assert final["title"] == last["title"]
    assert final["updated_at"] == last["updated_at"]


async def test_concurrent_patches_with_one_if_match_let_exactly_one_through(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    url = f"/todos/{setup.todo['id']}"
    headers = {**setup.owner.headers, "If-Match": '"1"'}

    responses = await asyncio.gather(
        *(live_client.patch(url, json={"title": f"t{n}"}, headers=headers) for n in range(10))
    )

    assert _statuses(responses) == [200] + [412] * 9
    winner = await next(r for r in responses if r.status_code == 200).get_json()
    stored = await stored_todo(live_database, setup.todo["id"])
    assert stored is not None
    assert (stored.title, stored.version) == (winner["title"], 2)


async def test_concurrent_deletes_and_patches_give_no_5xx(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    url = f"/todos/{setup.todo['id']}"
    headers = setup.owner.headers

    responses = await asyncio.gather(
        *(live_client.delete(url, headers=headers) for _ in range(3)),
        *(live_client.patch(url, json={"done": True}, headers=headers) for _ in range(5)),
    )

    deletes, patches = responses[:3], responses[3:]
    assert _statuses(deletes) == [204, 404, 404]
    assert {response.status_code for response in patches} <= {200, 404}
    assert (await live_client.get(url, headers=headers)).status_code == 404
    assert await todo_count(live_database, setup.space_id) == 0


async def test_concurrent_creates_in_one_space_all_land(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    responses = await asyncio.gather(
        *(
            live_client.post(
                "/todos",
                json={"title": f"parallel {n}", "space_id": setup.space_id},
                headers=setup.owner.headers,
            )
            for n in range(15)
        )
    )

    assert _statuses(responses) == [201] * 15
    ids = {(await response.get_json())["id"] for response in responses}
    assert len(ids) == 15
    assert await todo_count(live_database, setup.space_id) == 16


async def test_concurrent_additions_of_different_users_all_succeed(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    names = await _users(live_database, 10)
    retries_before = live_database.stats.retries

    responses = await asyncio.gather(
        *(
            live_client.post(
                f"/organizations/{setup.organization_id}/members",
                json={"user_name": name},
                headers=setup.owner.headers,
            )
            for name in names
        )
    )

    print(f"10 concurrent member additions: {live_database.stats.retries - retries_before} retries")
    assert _statuses(responses) == [201] * 10, [await r.get_json() for r in responses]
    members = [await response.get_json() for response in responses]
    assert sorted(member["user_name"] for member in members) == sorted(names)
    organization = uuid.UUID(setup.organization_id)
    for member in members:
        user_id = uuid.UUID(member["user_id"])
        role = await live_database.run(
            lambda s, u=user_id: MembershipDAO.role_of(s, organization, u)
        )
        assert role is Role.MEMBER


async def test_concurrent_additions_of_one_user_make_one_membership(
    live_client: Client, live_database: Database, setup: Setup
) -> None:
    [name] = await _users(live_database, 1)
    retries_before = live_database.stats.retries

    responses = await asyncio.gather(
        *(
            live_client.post(
                f"/organizations/{setup.organization_id}/members",
                json={"user_name": name, "role": role},
                headers=setup.owner.headers,
            )
            for role in ["member", "owner"] * 4
        )
    )

    retries = live_database.stats.retries - retries_before
    print(f"8 concurrent additions of one user: {retries} retries")
    assert _statuses(responses) == [201] + [409] * 7, [await r.get_json() for r in responses]
    winner = await next(r for r in responses if r.status_code == 201).get_json()
    organization = uuid.UUID(setup.organization_id)
    user_id = uuid.UUID(winner["user_id"])
    role = await live_database.run(lambda s: MembershipDAO.role_of(s, organization, user_id))
    assert role is Role(winner["role"])
