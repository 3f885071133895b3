"""Deleting organizations and spaces on a real database: gone for every caller at once, and
their rows removed afterwards in bounded batches, each its own short transaction.

Most tests stop the app's background pass (`no_worker`) and run `purge_deleted` themselves,
so the batches they see are all there were; the last test leaves the pass running and waits
for it to do the job alone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, text

from app.db.database import Database
from app.deletions import PurgeReport, purge_deleted
from app.models import Daos, MembershipDAO, OrganizationDAO, SpaceDAO, TodoDAO
from app.models.changes import changes
from tests.conftest import Caller, Team, create_todo, new_caller, unique_name
from tests.sql import fetch

pytestmark = pytest.mark.live_db

BULK_TODOS = 100_000
BULK_BATCH = 5_000


@pytest.fixture
async def no_worker(live_app: Quart) -> Quart:
    """The live app with its background deletion pass stopped: the test purges by itself."""
    await live_app.extensions["deletions"].stop()
    return live_app


async def _organization(client: Client, owner: Caller) -> str:
    response = await client.post(
        "/organizations", json={"name": unique_name("org")}, headers=owner.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return str((await response.get_json())["id"])


async def _space(client: Client, owner: Caller, organization_id: str, name: str) -> str:
    response = await client.post(
        "/spaces", json={"name": name, "organization_id": organization_id}, headers=owner.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return str((await response.get_json())["id"])


async def _add(client: Client, owner: Caller, organization_id: str, newcomer: Caller) -> None:
    response = await client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": newcomer.name, "role": "member"},
        headers=owner.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)


async def _delete_organization(client: Client, owner: Caller, organization_id: str) -> None:
    response = await client.delete(f"/organizations/{organization_id}", headers=owner.headers)
    assert response.status_code == 204, await response.get_data(as_text=True)
    assert await response.get_data() == b""


async def _delete_space(client: Client, owner: Caller, space_id: str) -> None:
    response = await client.delete(f"/spaces/{space_id}", headers=owner.headers)
    assert response.status_code == 204, await response.get_data(as_text=True)
    assert await response.get_data() == b""


async def _stored(database: Database, organization_id: str) -> dict[str, int]:
    """How many rows of the organization are stored, read past every visibility rule."""
    organization = uuid.UUID(organization_id)
    in_organization = SpaceDAO.organization_id == organization
    statement = select(
        select(func.count())
        .select_from(TodoDAO)
        .join(SpaceDAO, SpaceDAO.id == TodoDAO.space_id)
        .where(in_organization)
        .scalar_subquery()
        .label("todos"),
        select(func.count()).where(in_organization).scalar_subquery().label("spaces"),
        select(func.count())
        .where(MembershipDAO.organization_id == organization)
        .scalar_subquery()
        .label("memberships"),
        select(func.count())
        .where(OrganizationDAO.id == organization)
        .scalar_subquery()
        .label("organizations"),
    )
    (row,) = await fetch(database, statement)
    return {name: int(count) for name, count in row._asdict().items()}


async def _stored_in_space(database: Database, space_id: str) -> tuple[int, int]:
    """(todos, space rows) stored for the space, read past every visibility rule."""
    space = uuid.UUID(space_id)
    statement = select(
        select(func.count()).where(TodoDAO.space_id == space).scalar_subquery().label("todos"),
        select(func.count()).where(SpaceDAO.id == space).scalar_subquery().label("spaces"),
    )
    (row,) = await fetch(database, statement)
    return int(row.todos), int(row.spaces)


NOTHING = {"todos": 0, "spaces": 0, "memberships": 0, "organizations": 0}


async def _logged(database: Database, organization_id: str) -> int:
    """Entries of the organization's change log (app.models.changes)."""
    statement = select(func.count()).where(changes.c.organization_id == uuid.UUID(organization_id))
    (row,) = await fetch(database, select(statement.scalar_subquery().label("entries")))
    return int(row.entries)


def _log_batches_of(report: PurgeReport, logged: int, batch: int) -> list[tuple[str, int]]:
    """Check the change log went too, in bounded batches after everything else, and return
    the other batches."""
    log_batches = [rows for table, rows in report.batches if table == "changes"]
    assert sum(log_batches) == logged
    assert all(rows <= batch for rows in log_batches)
    assert log_batches
    assert report.batches[-len(log_batches) :] == [("changes", rows) for rows in log_batches]
    return report.batches[: -len(log_batches)]


async def _insert_todos(
    database: Database, organization_id: str, author: Caller, per_space: int
) -> None:
    """`per_space` todos in every space of the organization, one INSERT ... SELECT per space
    (CockroachDB is slower at one very large statement than at a few large ones)."""
    spaces = await fetch(
        database,
        text("SELECT id FROM spaces WHERE organization_id = :organization_id"),
        {"organization_id": uuid.UUID(organization_id)},
    )
    insert = text(
        "INSERT INTO todos (title, space_id, user_id) "
        "SELECT 'bulk ' || CAST(n AS TEXT), CAST(:space_id AS UUID), CAST(:author_id AS UUID) "
        f"FROM generate_series(1, {int(per_space)}) AS n"
    )
    for space in spaces:
        await fetch(database, insert, {"author_id": author.id, "space_id": space.id})


async def test_only_owners_delete_an_organization(live_client: Client, team: Team) -> None:
    url = f"/organizations/{team.organization_id}"

    by_member = await live_client.delete(url, headers=team.member.headers)
    by_stranger = await live_client.delete(url, headers=team.stranger.headers)
    unknown = await live_client.delete(f"/organizations/{uuid.uuid4()}", headers=team.owner.headers)

    assert by_member.status_code == 403
    assert by_stranger.status_code == unknown.status_code == 404
    assert await by_stranger.get_json() == await unknown.get_json()
    for caller in (team.owner, team.member):
        assert (await live_client.get(url, headers=caller.headers)).status_code == 200
    space = await live_client.get(f"/spaces/{team.space_id}", headers=team.member.headers)
    assert space.status_code == 200


async def test_a_deleted_organization_is_gone_for_everyone_at_once(
    live_client: Client, live_database: Database, no_worker: Quart, team: Team
) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id
    shown = await live_client.get(f"/organizations/{organization_id}", headers=owner.headers)
    name = (await shown.get_json())["name"]
    todos = [
        await create_todo(live_client, owner, team.space_id),
        await create_todo(live_client, member, team.space_id),
    ]

    await _delete_organization(live_client, owner, organization_id)

    reads = [
        f"/organizations/{organization_id}",
        f"/organizations/{organization_id}/members",
        f"/spaces/{team.space_id}",
        *(f"/todos/{todo['id']}" for todo in todos),
    ]
    for caller in (owner, member):
        for url in reads:
            assert (await live_client.get(url, headers=caller.headers)).status_code == 404, url
        for path, query in (
            ("/spaces", {}),
            ("/spaces", {"organization_id": organization_id}),
            ("/todos", {}),
            ("/todos", {"space_id": team.space_id}),
        ):
            listed = await live_client.get(path, query_string=query, headers=caller.headers)
            assert listed.status_code == 200
            assert (await listed.get_json())["items"] == [], (path, query)
        organizations = await live_client.get("/organizations", headers=caller.headers)
        assert await organizations.get_json() == []
    changes = [
        await live_client.patch(
            f"/todos/{todos[1]['id']}", json={"done": True}, headers=owner.headers
        ),
        await live_client.delete(f"/todos/{todos[0]['id']}", headers=owner.headers),
        await live_client.post(
            "/todos", json={"title": "late", "space_id": team.space_id}, headers=member.headers
        ),
        await live_client.post(
            "/spaces",
            json={"name": "late", "organization_id": organization_id},
            headers=owner.headers,
        ),
        await live_client.patch(
            f"/spaces/{team.space_id}", json={"name": "x"}, headers=owner.headers
        ),
        await live_client.delete(f"/spaces/{team.space_id}", headers=owner.headers),
        await live_client.patch(
            f"/organizations/{organization_id}", json={"name": "renamed"}, headers=owner.headers
        ),
        await live_client.delete(f"/organizations/{organization_id}", headers=owner.headers),
        await live_client.post(
            f"/organizations/{organization_id}/members",
            json={"user_name": team.stranger.name},
            headers=owner.headers,
        ),
        await live_client.patch(
            f"/organizations/{organization_id}/members/{member.id}",
            json={"role": "owner"},
            headers=owner.headers,
        ),
        await live_client.delete(
            f"/organizations/{organization_id}/members/{member.id}", headers=member.headers
        ),
    ]
    assert [r.status_code for r in changes] == [404] * len(changes)
    # Hidden by the mark alone: no row is removed yet (the background pass is stopped).
    assert await _stored(live_database, organization_id) == {
        "todos": 2,
        "spaces": 1,
        "memberships": 2,
        "organizations": 1,
    }
    # The name is free at once, for anyone.
    reused = await live_client.post(
        "/organizations", json={"name": name}, headers=team.stranger.headers
    )
    assert reused.status_code == 201, await reused.get_data(as_text=True)
    assert (await reused.get_json())["id"] != organization_id


async def test_purge_removes_an_organization_in_bounded_batches_and_nothing_else(
    live_client: Client, live_database: Database, no_worker: Quart, team: Team
) -> None:
    owner, organization_id = team.owner, team.organization_id
    for _ in range(3):
        await _add(live_client, owner, organization_id, await new_caller(live_database))
    spaces = [team.space_id, await _space(live_client, owner, organization_id, "second")]
    for number in range(7):
        await create_todo(live_client, owner, spaces[number % 2], title=f"todo {number}")
    bystander = await new_caller(live_database)
    other_id = await _organization(live_client, bystander)
    other_todo = await create_todo(
        live_client, bystander, await _space(live_client, bystander, other_id, "kept")
    )
    before = await _stored(live_database, organization_id)
    assert before == {"todos": 7, "spaces": 2, "memberships": 5, "organizations": 1}
    other_before = await _stored(live_database, other_id)
    await _delete_organization(live_client, owner, organization_id)
    logged = await _logged(live_database, organization_id)
    assert logged > 0

    report = await purge_deleted(live_database, Daos.real(), 2)

    assert _log_batches_of(report, logged, 2) == [
        ("todos", 2),
        ("todos", 2),
        ("todos", 2),
        ("todos", 1),
        ("spaces", 2),
        ("memberships", 2),
        ("memberships", 2),
        ("memberships", 1),
    ]
    assert all(rows <= 2 for _, rows in report.batches)
    assert await _stored(live_database, organization_id) == NOTHING
    assert await _logged(live_database, organization_id) == 0
    assert await _stored(live_database, other_id) == other_before
    kept = await live_client.get(f"/todos/{other_todo['id']}", headers=bystander.headers)
    assert kept.status_code == 200
    assert await kept.get_json() == other_todo
    assert (await purge_deleted(live_database, Daos.real(), 2)).batches == []


async def test_an_organization_of_100_000_todos_is_removed_in_batches_of_5_000(
    live_client: Client, live_database: Database, no_worker: Quart, team: Team
) -> None:
    owner, organization_id = team.owner, team.organization_id
    for name in ("second", "third", "fourth"):
        await _space(live_client, owner, organization_id, name)
    started = time.monotonic()
    await _insert_todos(live_database, organization_id, owner, BULK_TODOS // 4)
    inserted = time.monotonic()
    assert await _stored(live_database, organization_id) == {
        "todos": BULK_TODOS,
        "spaces": 4,
        "memberships": 2,
        "organizations": 1,
    }
    await _delete_organization(live_client, owner, organization_id)
    assert (
        await live_client.get(f"/spaces/{team.space_id}", headers=owner.headers)
    ).status_code == 404

    purging = time.monotonic()
    report = await purge_deleted(live_database, Daos.real(), BULK_BATCH)
    purged = time.monotonic()

    print(
        f"\n{BULK_TODOS} todos: inserted in {inserted - started:.1f} s, "
        f"purged in {purged - purging:.1f} s; batches {Counter(report.batches)}"
    )
    assert [rows for table, rows in report.batches if table == "todos"] == [BULK_BATCH] * 20
    assert [entry for entry in report.batches if entry[0] not in {"todos", "changes"}] == [
        ("spaces", 4),
        ("memberships", 2),
    ]
    rows = report.rows()
    assert rows.pop("changes") >= 1  # the organization's own log, written through the API
    assert rows == {"todos": BULK_TODOS, "spaces": 4, "memberships": 2}
    assert await _stored(live_database, organization_id) == NOTHING


async def test_an_interrupted_purge_is_finished_by_the_next_pass(
    live_client: Client, live_database: Database, no_worker: Quart, team: Team
) -> None:
    owner, organization_id = team.owner, team.organization_id
    for number in range(7):
        await create_todo(live_client, team.member, team.space_id, title=f"todo {number}")
    await _delete_organization(live_client, owner, organization_id)
    daos, organization = Daos.real(), uuid.UUID(organization_id)

    # A pass that stops (crash, restart, cancelled task) after two batches of todos.
    for _ in range(2):
        removed = await live_database.run(
            lambda x: daos.todos.purge_batch_of_organization(x, organization, 3),
            single_statement=True,
        )
        assert removed == 3
    assert await _stored(live_database, organization_id) == {
        "todos": 1,
        "spaces": 1,
        "memberships": 2,
        "organizations": 1,
    }
    assert (
        await live_client.get(f"/organizations/{organization_id}", headers=owner.headers)
    ).status_code == 404

    logged = await _logged(live_database, organization_id)

    report = await purge_deleted(live_database, daos, 3)

    assert _log_batches_of(report, logged, 3) == [
        ("todos", 1),
        ("spaces", 1),
        ("memberships", 2),
    ]
    assert await _stored(live_database, organization_id) == NOTHING


async def test_a_deleted_space_is_gone_at_once_and_its_todos_go_in_batches(
    live_client: Client, live_database: Database, no_worker: Quart, team: Team
) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id
    doomed = await _space(live_client, owner, organization_id, "doomed")
    doomed_todos = [
        await create_todo(live_client, caller, doomed, title=f"todo {number}")
        for number, caller in enumerate([owner, member] * 3 + [member])
    ]
    kept_todos = [await create_todo(live_client, member, team.space_id) for _ in range(2)]

    refused = await live_client.delete(f"/spaces/{doomed}", headers=member.headers)
    hidden = await live_client.delete(f"/spaces/{doomed}", headers=team.stranger.headers)
    assert (refused.status_code, hidden.status_code) == (403, 404)
    await _delete_space(live_client, owner, doomed)

    for caller in (owner, member):
        assert (
            await live_client.get(f"/spaces/{doomed}", headers=caller.headers)
        ).status_code == 404
        for todo in doomed_todos[:2]:
            response = await live_client.get(f"/todos/{todo['id']}", headers=caller.headers)
            assert response.status_code == 404
        in_space = await live_client.get(
            "/todos", query_string={"space_id": doomed}, headers=caller.headers
        )
        assert (await in_space.get_json())["items"] == []
        everything = await (await live_client.get("/todos", headers=caller.headers)).get_json()
        assert {t["id"] for t in everything["items"]} == {t["id"] for t in kept_todos}
        spaces = await (await live_client.get("/spaces", headers=caller.headers)).get_json()
        assert [space["id"] for space in spaces["items"]] == [team.space_id]
    late = await live_client.post(
        "/todos", json={"title": "late", "space_id": doomed}, headers=owner.headers
    )
    again = await live_client.delete(f"/spaces/{doomed}", headers=owner.headers)
    assert late.status_code == again.status_code == 404
    assert await _stored_in_space(live_database, doomed) == (7, 1)

    report = await purge_deleted(live_database, Daos.real(), 3)

    assert report.batches == [("todos", 3), ("todos", 3), ("todos", 1)]
    assert await _stored_in_space(live_database, doomed) == (0, 0)
    assert await _stored(live_database, organization_id) == {
        "todos": 2,
        "spaces": 1,
        "memberships": 2,
        "organizations": 1,
    }
    for todo in kept_todos:
        kept = await live_client.get(f"/todos/{todo['id']}", headers=owner.headers)
        assert kept.status_code == 200
    organization = await live_client.get(
        f"/organizations/{organization_id}", headers=member.headers
    )
    assert organization.status_code == 200


async def _until(deadline: float, check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check()` (an async predicate) until it holds; fail at `deadline`."""
    while not await check():
        assert time.monotonic() < deadline, "the background pass did not finish in time"
        await asyncio.sleep(0.1)


async def test_the_background_pass_removes_deleted_rows_on_its_own(
    live_client: Client, live_database: Database, team: Team
) -> None:
    owner, organization_id = team.owner, team.organization_id
    doomed = await _space(live_client, owner, organization_id, "doomed")
    for _ in range(3):
        await create_todo(live_client, owner, doomed)
    await create_todo(live_client, team.member, team.space_id)
    deadline = time.monotonic() + 10

    await _delete_space(live_client, owner, doomed)

    async def space_removed() -> bool:
        return await _stored_in_space(live_database, doomed) == (0, 0)

    await _until(deadline, space_removed)
    assert await _stored_in_space(live_database, team.space_id) == (1, 1)

    await _delete_organization(live_client, owner, organization_id)

    async def organization_removed() -> bool:
        return await _stored(live_database, organization_id) == NOTHING

    await _until(deadline, organization_removed)
    print(f"\nthe background pass finished in {10 - (deadline - time.monotonic()):.2f} s")
