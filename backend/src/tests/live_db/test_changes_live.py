"""The change feed on a real database: a copy built only from the feed equals a fresh snapshot,
also while writers commit concurrently and out of order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select, update

from app.db.database import Database
from app.db.executor import Executor, Statement
from app.deletions import purge_deleted
from app.housekeeping import purge_old_changes
from app.models import Daos, TodoDAO
from app.models.changes import change_horizons, changes
from app.models.sessions import Caller as Session
from tests.conftest import Caller, Team, create_todo, new_caller

pytestmark = pytest.mark.live_db

Copy = dict[tuple[str, str], dict[str, Any]]


async def _feed(
    client: Client, team: Team, since: str | None, limit: int = 500
) -> tuple[list[dict[str, Any]], str]:
    """Every change ready now after `since`, page by page; the token after them."""
    changes: list[dict[str, Any]] = []
    while True:
        query: dict[str, Any] = {"limit": limit}
        if since is not None:
            query["since"] = since
        response = await client.get(
            f"/organizations/{team.organization_id}/changes",
            query_string=query,
            headers=team.owner.headers,
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        page = await response.get_json()
        changes += page["changes"]
        since = page["next"]
        if not page["more"]:
            assert since is not None
            return changes, since


def _apply(copy: Copy, changes: list[dict[str, Any]]) -> None:
    for change in changes:
        key = (change["kind"], change["id"])
        if change["op"] == "upsert":
            assert copy.get(key) != change["data"], f"applied twice: {change}"
            copy[key] = change["data"]
        else:
            copy.pop(key, None)


async def _snapshot(client: Client, team: Team) -> Copy:
    copy: Copy = {}
    changes, _ = await _feed(client, team, None, limit=7)
    _apply(copy, changes)
    return copy


async def test_a_copy_from_the_feed_follows_every_kind_of_change(
    live_client: Client, team: Team
) -> None:
    copy: Copy = {}
    changes, token = await _feed(live_client, team, None)
    _apply(copy, changes)
    kinds = {kind for kind, _ in copy}
    assert kinds == {"organization", "member", "space", "todo"} - {"todo"}

    first = await create_todo(live_client, team.owner, team.space_id, title="one")
    second = await create_todo(live_client, team.member, team.space_id, title="two")
    response = await live_client.patch(
        f"/todos/{first['id']}", json={"done": True}, headers=team.owner.headers
    )
    assert response.status_code == 200
    response = await live_client.delete(f"/todos/{second['id']}", headers=team.owner.headers)
    assert response.status_code == 204
    response = await live_client.patch(
        f"/organizations/{team.organization_id}",
        json={"name": f"renamed-{team.organization_id}"},
        headers=team.owner.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    response = await live_client.patch(
        f"/organizations/{team.organization_id}/members/{team.member.id}",
        json={"role": "owner"},
        headers=team.owner.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)

    changes, token = await _feed(live_client, team, token)
    _apply(copy, changes)
    assert copy == await _snapshot(live_client, team)
    assert copy[("todo", first["id"])]["done"] is True
    assert ("todo", second["id"]) not in copy

    again, _ = await _feed(live_client, team, token)
    assert again == []


async def test_concurrent_writers_leave_the_copy_equal_to_a_snapshot(
    live_client: Client, live_database: Database, team: Team
) -> None:
    """Writers whose transactions overlap (so commit in another order than they started)
    create, patch and delete todos, add, promote and remove members, and delete a space
    full of todos, while a reader follows the feed a few changes at a time; once they stop
    (and the deleted space's todos are removed, as the background does within seconds) the
    copy equals a snapshot."""
    copy: Copy = {}
    changes_seen, token = await _feed(live_client, team, None)
    _apply(copy, changes_seen)
    response = await live_client.post(
        "/spaces",
        json={"name": "doomed", "organization_id": team.organization_id},
        headers=team.owner.headers,
    )
    doomed = (await response.get_json())["id"]
    for index in range(5):
        await create_todo(live_client, team.owner, doomed, title=f"doomed {index}")
    todos = [
        (await create_todo(live_client, team.owner, team.space_id, title=f"t{i}"))["id"]
        for i in range(12)
    ]
    newcomers = [await new_caller(live_database) for _ in range(4)]
    writers_done = asyncio.Event()
    rng = random.Random(7)

    async def todo_writer(worker: int) -> None:
        for step in range(15):
            todo_id = rng.choice(todos)
            action = rng.random()
            if action < 0.6:
                await live_client.patch(
                    f"/todos/{todo_id}",
                    json={"title": f"w{worker}-{step}"},
                    headers=team.owner.headers,
                )
            elif action < 0.8:
                todos.append((await create_todo(live_client, team.member, team.space_id))["id"])
            else:
                await live_client.delete(f"/todos/{todo_id}", headers=team.owner.headers)

    async def member_writer(newcomer: Caller) -> None:
        base = f"/organizations/{team.organization_id}/members"
        await live_client.post(base, json={"user_name": newcomer.name}, headers=team.owner.headers)
        await live_client.patch(
            f"{base}/{newcomer.id}", json={"role": "owner"}, headers=team.owner.headers
        )
        if rng.random() < 0.5:
            await live_client.delete(f"{base}/{newcomer.id}", headers=team.owner.headers)

    owner_session = Session(team.owner.id, uuid.uuid4(), 0, datetime.now(UTC) + timedelta(hours=1))

    held = [
        (await create_todo(live_client, team.owner, team.space_id, title=f"held {i}"))["id"]
        for i in range(8)
    ]

    async def slow_writer(worker: int) -> None:
        """Transactions held open for a while after their write: they take their position
        early and commit late, after others that started after them. Only these write the
        `held` todos, so a change of theirs the feed missed stays missing."""
        for step in range(10):
            todo_id = uuid.UUID(held[worker * 2 + step % 2])
            content = f"s{worker}-{step}"
            hold = rng.uniform(0, 0.04)

            async def work(executor: Executor) -> None:
                await TodoDAO.update_permitted(
                    executor,
                    todo_id,  # noqa: B023 - awaited within the iteration
                    owner_session,
                    {"content": content},  # noqa: B023
                )
                await asyncio.sleep(hold)  # noqa: B023

            await read_committed.run(work)

    async def space_writer() -> None:
        await asyncio.sleep(0.05)
        response = await live_client.delete(f"/spaces/{doomed}", headers=team.owner.headers)
        assert response.status_code == 204

    async def reader() -> None:
        nonlocal token
        while not writers_done.is_set():
            changes_seen, token = await _feed(live_client, team, token, limit=5)
            _apply(copy, changes_seen)
            await asyncio.sleep(0)

    # At READ COMMITTED, so that PostgreSQL lets them commit late instead of aborting them.
    read_committed = Database(
        live_database.settings.model_copy(update={"db_isolation_level": "READ COMMITTED"})
    )
    await read_committed.start()
    reading = asyncio.create_task(reader())
    await asyncio.gather(
        *(todo_writer(worker) for worker in range(8)),
        *(member_writer(newcomer) for newcomer in newcomers),
        *(slow_writer(worker) for worker in range(4)),
        space_writer(),
    )
    writers_done.set()
    await reading
    await read_committed.stop()
    await purge_deleted(live_database, Daos.real(), batch=2)
    changes_seen, token = await _feed(live_client, team, token)
    _apply(copy, changes_seen)
    assert copy == await _snapshot(live_client, team)
    assert not any(kind == "space" and key == doomed for kind, key in copy)


@pytest.mark.parametrize(
    "since", ["garbage", "a.b", "eyJ4IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA", "x" * 5000]
)
async def test_a_malformed_or_forged_token_is_a_422(
    live_client: Client, team: Team, since: str
) -> None:
    response = await live_client.get(
        f"/organizations/{team.organization_id}/changes",
        query_string={"since": since},
        headers=team.owner.headers,
    )
    assert response.status_code == 422, await response.get_data(as_text=True)


async def test_another_organizations_token_is_a_422_and_outsiders_get_404(
    live_client: Client, team: Team
) -> None:
    _, token = await _feed(live_client, team, None)
    response = await live_client.post(
        "/organizations", json={"name": f"other-{team.space_id}"}, headers=team.owner.headers
    )
    other = (await response.get_json())["id"]
    response = await live_client.get(
        f"/organizations/{other}/changes",
        query_string={"since": token},
        headers=team.owner.headers,
    )
    assert response.status_code == 422
    assert "another organization" in str(await response.get_json())
    response = await live_client.get(
        f"/organizations/{team.organization_id}/changes", headers=team.stranger.headers
    )
    assert response.status_code == 404


async def test_changes_older_than_the_retention_are_purged_and_their_tokens_are_410(
    live_client: Client, live_database: Database, team: Team
) -> None:
    daos = Daos.real()
    _, old_token = await _feed(live_client, team, None)
    await create_todo(live_client, team.owner, team.space_id)
    await live_database.run(daos.changes.take_horizon)
    retention = timedelta(seconds=live_database.settings.changes_retention_seconds)
    # As if that horizon had been taken a retention period and a minute ago.
    await live_database.run(
        lambda x: x.rows(
            Statement(
                update(change_horizons).values(
                    taken_at=change_horizons.c.taken_at - retention - timedelta(minutes=1)
                )
            ),
            {},
        )
    )
    kept = await create_todo(live_client, team.owner, team.space_id)

    assert await purge_old_changes(live_database, daos) >= 1
    left = await live_database.run(
        lambda x: x.rows(
            Statement(
                select(changes.c.kind, changes.c.object_id).where(
                    changes.c.organization_id == uuid.UUID(team.organization_id)
                )
            ),
            {},
        )
    )
    assert [(row.kind, str(row.object_id)) for row in left] == [("todo", kept["id"])]

    response = await live_client.get(
        f"/organizations/{team.organization_id}/changes",
        query_string={"since": old_token},
        headers=team.owner.headers,
    )
    assert response.status_code == 410
    assert "start again without `since`" in (await response.get_json())["detail"]
    copy: Copy = {}
    changes_now, token = await _feed(live_client, team, None)
    _apply(copy, changes_now)
    assert ("todo", kept["id"]) in copy
    again, _ = await _feed(live_client, team, token)
    assert again == []


async def test_a_change_that_commits_after_a_later_one_still_reaches_a_reader(
    live_client: Client, live_database: Database, team: Team
) -> None:
    """A transaction takes its position, a later one commits and is read, a token is handed
    out, and only then does the first commit: the next read from that token has it. The slow
    one runs at READ COMMITTED: at SERIALIZABLE PostgreSQL may abort it at its commit (the
    reader read what it wrote) and its retry takes a new position, which would hide the case."""
    early = await create_todo(live_client, team.owner, team.space_id, title="early")
    copy: Copy = {}
    changes_seen, token = await _feed(live_client, team, None)
    _apply(copy, changes_seen)
    session = Session(team.owner.id, uuid.uuid4(), 0, datetime.now(UTC) + timedelta(hours=1))
    written, release = asyncio.Event(), asyncio.Event()

    async def slow(executor: Executor) -> None:
        await TodoDAO.update_permitted(executor, uuid.UUID(early["id"]), session, {"done": True})
        written.set()
        await release.wait()

    read_committed = Database(
        live_database.settings.model_copy(update={"db_isolation_level": "READ COMMITTED"})
    )
    await read_committed.start()
    slow_commit = asyncio.create_task(read_committed.run(slow))
    await written.wait()
    later = await create_todo(live_client, team.member, team.space_id, title="later")
    changes_seen, token = await _feed(live_client, team, token)
    _apply(copy, changes_seen)
    release.set()
    await slow_commit
    await read_committed.stop()

    changes_seen, token = await _feed(live_client, team, token)
    _apply(copy, changes_seen)
    assert copy[("todo", early["id"])]["done"] is True
    assert ("todo", later["id"]) in copy
    assert copy == await _snapshot(live_client, team)
