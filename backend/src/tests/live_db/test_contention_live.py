"""Real contention at SERIALIZABLE: many clients change one row and one organization at once.

PostgreSQL runs at SERIALIZABLE here, as CockroachDB always does, so conflicting transactions
fail with SQLSTATE 40001 and the transaction scope re-runs them. What a client sees must not
show it: every request ends 200 (or 412 when its If-Match went stale), nothing is lost, and
the retry counter proves the path was taken.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from tests.conftest import auth_headers, register, unique_name

pytestmark = pytest.mark.live_db

CONCURRENCY = int(os.environ.get("CONTENTION_CONCURRENCY", "50"))


async def _organization_with_todo(client: Client, headers: dict[str, str]) -> tuple[str, str]:
    organization = await client.post(
        "/organizations", json={"name": unique_name("org")}, headers=headers
    )
    organization_id = (await organization.get_json())["id"]
    space = await client.post(
        "/spaces", json={"name": "hot", "organization_id": organization_id}, headers=headers
    )
    todo = await client.post(
        "/todos",
        json={"title": "contended", "space_id": (await space.get_json())["id"]},
        headers=headers,
    )
    return organization_id, (await todo.get_json())["id"]


async def test_concurrent_patches_lose_nothing(
    live_client: Client, live_database: Database
) -> None:
    headers = await auth_headers(live_client)
    _, todo_id = await _organization_with_todo(live_client, headers)
    retries_before = live_database.stats.retries

    responses = await asyncio.gather(
        *(
            live_client.patch(f"/todos/{todo_id}", json={"content": f"edit {n}"}, headers=headers)
            for n in range(CONCURRENCY)
        )
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: CONCURRENCY}, statuses
    final = await (await live_client.get(f"/todos/{todo_id}", headers=headers)).get_json()
    assert final["version"] == 1 + CONCURRENCY  # every acknowledged update is in the version
    versions = sorted([(await r.get_json())["version"] for r in responses])
    assert versions == list(range(2, CONCURRENCY + 2))  # each saw a distinct state
    assert live_database.stats.retries > retries_before
    assert live_database.stats.exhausted == 0


async def test_concurrent_patches_with_one_if_match_let_exactly_one_win(
    live_client: Client,
) -> None:
    headers = await auth_headers(live_client)
    _, todo_id = await _organization_with_todo(live_client, headers)

    responses = await asyncio.gather(
        *(
            live_client.patch(
                f"/todos/{todo_id}", json={"done": True}, headers={**headers, "If-Match": '"1"'}
            )
            for _ in range(CONCURRENCY)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: 1, 412: CONCURRENCY - 1}


async def test_concurrent_membership_changes_all_land(
    live_client: Client, live_database: Database
) -> None:
    owner = await auth_headers(live_client)
    organization_id, _ = await _organization_with_todo(live_client, owner)
    names = [unique_name() for _ in range(8)]
    for name in names:
        await register(live_client, name)

    responses = await asyncio.gather(
        *(
            live_client.post(
                f"/organizations/{organization_id}/members",
                json={"user_name": name, "role": "member"},
                headers=owner,
            )
            for name in names
            for _ in range(3)  # each user added three times at once: one 201, two 409
        )
    )

    assert Counter(r.status_code for r in responses) == {201: 8, 409: 16}
    assert live_database.stats.exhausted == 0
