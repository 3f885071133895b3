"""`Idempotency-Key` on a real database: a retried POST replays the first response, exactly one
row is created, even when the retries race each other.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from app.db.executor import Executor, Row
from app.models import IdempotencyKeyDAO
from tests.conftest import Caller, new_caller, todo_count, unique_name
from tests.sql import fetch

pytestmark = pytest.mark.live_db


@dataclass(frozen=True)
class Shared:
    """Two members of one organization with one space."""

    owner: Caller
    member: Caller
    organization_id: str
    space_id: uuid.UUID


@pytest.fixture
async def shared(live_client: Client, live_database: Database) -> Shared:
    owner, member = await new_caller(live_database), await new_caller(live_database)
    organization = await live_client.post(
        "/organizations", json={"name": unique_name("org")}, headers=owner.headers
    )
    organization_id = (await organization.get_json())["id"]
    added = await live_client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": member.name},
        headers=owner.headers,
    )
    space = await live_client.post(
        "/spaces", json={"name": "inbox", "organization_id": organization_id}, headers=owner.headers
    )
    assert (organization.status_code, added.status_code, space.status_code) == (201, 201, 201)
    return Shared(owner, member, organization_id, uuid.UUID((await space.get_json())["id"]))


def _todo(shared: Shared, title: str = "pay rent") -> dict[str, Any]:
    return {"title": title, "space_id": str(shared.space_id)}


async def _keys(database: Database, user: Caller) -> dict[str, Row]:
    keys = IdempotencyKeyDAO.__table__
    rows = await fetch(database, keys.select().where(keys.c.user_id == user.id))
    return {row.key: row for row in rows}


async def test_retry_with_the_same_key_replays_the_first_response(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    headers = shared.owner.with_key(unique_name("key"))

    first = await live_client.post("/todos", json=_todo(shared), headers=headers)
    again = await live_client.post("/todos", json=_todo(shared), headers=headers)
    # The same body, spelled differently, is the same request.
    reordered = await live_client.post(
        "/todos",
        json={"space_id": str(shared.space_id), "done": False, "content": "", "title": "pay rent"},
        headers=headers,
    )

    assert first.status_code == again.status_code == reordered.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert (
        again.headers["Idempotent-Replayed"] == reordered.headers["Idempotent-Replayed"] == "true"
    )
    assert await again.get_json() == await reordered.get_json() == await first.get_json()
    for header in ("Location", "ETag"):
        assert again.headers[header] == first.headers[header]
    assert await todo_count(live_database, shared.space_id) == 1


async def test_keys_of_different_users_are_independent(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    key = unique_name("key")

    mine = await live_client.post("/todos", json=_todo(shared), headers=shared.owner.with_key(key))
    yours = await live_client.post(
        "/todos", json=_todo(shared), headers=shared.member.with_key(key)
    )

    assert mine.status_code == yours.status_code == 201
    assert "Idempotent-Replayed" not in yours.headers
    mine_body, yours_body = await mine.get_json(), await yours.get_json()
    assert mine_body["id"] != yours_body["id"]
    assert (mine_body["user_id"], yours_body["user_id"]) == (
        str(shared.owner.id),
        str(shared.member.id),
    )
    assert await todo_count(live_database, shared.space_id) == 2


async def test_key_of_a_failed_request_is_not_stored(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    key = unique_name("key")
    headers = shared.owner.with_key(key)

    failed = await live_client.post(
        "/todos", json={"title": "lost", "space_id": str(uuid.uuid4())}, headers=headers
    )
    assert failed.status_code == 404
    assert key not in await _keys(live_database, shared.owner)

    retried = await live_client.post("/todos", json=_todo(shared), headers=headers)

    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert await todo_count(live_database, shared.space_id) == 1
    stored = (await _keys(live_database, shared.owner))[key]
    assert stored.status_code == 201


async def test_an_expired_key_can_be_used_again(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    key = unique_name("key")
    claimed = await live_database.run(
        lambda s: IdempotencyKeyDAO.claim(
            s, shared.owner.id, key, "hash-of-another-request", timedelta(seconds=-1)
        )
    )
    assert claimed is not None

    response = await live_client.post(
        "/todos", json=_todo(shared), headers=shared.owner.with_key(key)
    )

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert await todo_count(live_database, shared.space_id) == 1
    stored = (await _keys(live_database, shared.owner))[key]
    assert stored.status_code == 201
    assert stored.request_hash != "hash-of-another-request"
    replay = await live_client.post(
        "/todos", json=_todo(shared), headers=shared.owner.with_key(key)
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.get_json() == await response.get_json()


async def test_a_live_key_held_by_another_request_is_not_taken_over(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    """The contrast to the expired key: the same claim with a future expiry still holds."""
    key = unique_name("key")
    claimed = await live_database.run(
        lambda s: IdempotencyKeyDAO.claim(
            s, shared.owner.id, key, "hash-of-another-request", timedelta(hours=1)
        )
    )
    assert claimed is not None

    different = await live_client.post(
        "/todos", json=_todo(shared), headers=shared.owner.with_key(key)
    )

    assert different.status_code == 422
    assert await todo_count(live_database, shared.space_id) == 0


async def test_purge_expired_deletes_only_expired_keys(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    expired = [unique_name("old") for _ in range(3)]
    live = [unique_name("new") for _ in range(2)]
    for user in (shared.owner, shared.member):
        for key in expired + live:
            ttl = timedelta(seconds=-1) if key in expired else timedelta(hours=1)
            await live_database.run(
                lambda s, user=user, key=key, ttl=ttl: IdempotencyKeyDAO.claim(
                    s, user.id, key, "h", ttl
                )
            )
    completed = await live_client.post(
        "/todos", json=_todo(shared), headers=shared.owner.with_key("kept")
    )
    assert completed.status_code == 201

    purged = await live_database.run(lambda s: IdempotencyKeyDAO.purge_expired(s))
    again = await live_database.run(lambda s: IdempotencyKeyDAO.purge_expired(s))

    assert (purged, again) == (6, 0)
    assert set(await _keys(live_database, shared.owner)) == {*live, "kept"}
    assert set(await _keys(live_database, shared.member)) == set(live)


async def test_purge_expired_works_in_batches(live_database: Database) -> None:
    user = await new_caller(live_database)

    async def claim_expired(session: Executor) -> None:
        for number in range(5):
            await IdempotencyKeyDAO.claim(
                session, user.id, f"k{number}", "h", timedelta(seconds=-1)
            )

    await live_database.run(claim_expired)

    batches = [
        await live_database.run(lambda s: IdempotencyKeyDAO.purge_expired(s, 2)) for _ in range(4)
    ]

    assert batches == [2, 2, 1, 0]


async def test_concurrent_retries_with_one_key_create_one_todo(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    headers = shared.owner.with_key(unique_name("key"))
    retries_before = live_database.stats.retries

    responses = await asyncio.gather(
        *(live_client.post("/todos", json=_todo(shared), headers=headers) for _ in range(10))
    )

    statuses = [r.status_code for r in responses]
    bodies = [await r.get_json() for r in responses]
    assert statuses == [201] * 10, (statuses, bodies)
    assert len({body["id"] for body in bodies}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert await todo_count(live_database, shared.space_id) == 1
    print(f"idempotency race: {live_database.stats.retries - retries_before} retries")


async def test_concurrent_different_requests_with_one_key_create_one_todo(
    live_client: Client, live_database: Database, shared: Shared
) -> None:
    headers = shared.owner.with_key(unique_name("key"))

    responses = await asyncio.gather(
        *(
            live_client.post("/todos", json=_todo(shared, f"title {n}"), headers=headers)
            for n in range(6)
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [422] * 5
    assert await todo_count(live_database, shared.space_id) == 1
    winner = await next(r for r in responses if r.status_code == 201).get_json()
    replay = await live_client.post("/todos", json=_todo(shared, winner["title"]), headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.get_json() == winner
