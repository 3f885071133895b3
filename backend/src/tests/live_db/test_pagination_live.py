"""Keyset pagination on a real database: every visible row exactly once, newest first, whatever
the page size, filter, or writes made during the walk; and a page query that reads an index.

Rows are seeded through the DAOs, several per transaction, so many share `created_at` and
their order rests on the id tie-break, the case a pagination bug hides in.
"""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text

from app.db.database import Database
from app.db.executor import Executor, sent_statements
from app.models import MembershipDAO, OrganizationDAO, Role, SpaceDAO, TodoDAO
from app.models.sessions import Caller as Session
from app.models.spaces import SpaceRow
from app.models.todos import TodoRow
from app.pagination import Keyset
from tests.conftest import Caller, new_caller, unique_name
from tests.sql import fetch

pytestmark = pytest.mark.live_db

MAX_PAGES = 1_000


async def _organization(database: Database, owner: Caller) -> uuid.UUID:
    async def create(session: Executor) -> uuid.UUID:
        organization = await OrganizationDAO.create_owned(session, unique_name("org"), owner.id)
        assert organization is not None
        return organization.id

    return await database.run(create)


def _key(row: Any) -> tuple[Any, uuid.UUID]:
    """The sort key of a DAO row or of a JSON item, comparable across both."""
    if isinstance(row, dict):
        return datetime.fromisoformat(row["created_at"]), uuid.UUID(row["id"])
    return row.created_at, row.id


def _newest_first(rows: list[Any]) -> list[str]:
    return [str(row.id) for row in sorted(rows, key=_key, reverse=True)]


async def _walk(
    client: Client, caller: Caller, path: str, limit: int, **filters: str
) -> list[dict[str, Any]]:
    """Every item of a listing, page by page, checking the shape of each page on the way."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        query = {"limit": str(limit), **filters, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, query_string=query, headers=caller.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        page = await response.get_json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(page["items"]) <= limit
            return items
        assert len(page["items"]) == limit  # only the last page may be short
    raise AssertionError(f"{path} did not end within {MAX_PAGES} pages")


def _assert_strictly_newest_first(items: list[dict[str, Any]]) -> None:
    keys = [_key(item) for item in items]
    assert all(newer > older for newer, older in itertools.pairwise(keys))


@dataclass(frozen=True)
class World:
    """Two organizations: alice's with spaces `a1` and `a2`, bob's with space `b1`."""

    alice: Caller
    bob: Caller
    a1: uuid.UUID
    a2: uuid.UUID
    b1: uuid.UUID
    todos: list[TodoRow]

    def visible(self, caller: Caller, predicate: Callable[[TodoDAO], bool] = bool) -> list[str]:
        spaces = {self.a1, self.a2} if caller is self.alice else {self.b1}
        return _newest_first([t for t in self.todos if t.space_id in spaces and predicate(t)])


BATCHES = (100, 40, 1, 59)
"""Todos per seeding transaction: rows of one batch share created_at."""


async def _seed_todos(
    database: Database, authors: dict[uuid.UUID, uuid.UUID], count: int, title: str
) -> list[TodoRow]:
    """`count` todos spread over the spaces (space -> author), in one transaction."""
    spaces = list(authors)

    async def create(session: Executor) -> list[TodoRow]:
        return [
            await TodoDAO.create(
                session,
                space_id=spaces[number % len(spaces)],
                user_id=authors[spaces[number % len(spaces)]],
                title=f"{title} {number}",
                done=number % 3 == 0,
            )
            for number in range(count)
        ]

    return await database.run(create)


async def _world(database: Database, batches: tuple[int, ...]) -> World:
    alice, bob = await new_caller(database), await new_caller(database)
    org_a, org_b = await _organization(database, alice), await _organization(database, bob)

    async def spaces(session: Executor) -> list[uuid.UUID]:
        return [
            (await SpaceDAO.create(session, organization, name)).id
            for organization, name in ((org_a, "a1"), (org_a, "a2"), (org_b, "b1"))
        ]

    a1, a2, b1 = await database.run(spaces)
    authors = {a1: alice.id, b1: bob.id, a2: alice.id}
    todos = []
    for number, count in enumerate(batches):
        todos += await _seed_todos(database, authors, count, f"batch {number}")
        # More in a1 than in a2, in a transaction of their own.
        todos += await _seed_todos(database, {a1: alice.id}, count // 3, f"extra {number}")
    return World(alice, bob, a1, a2, b1, todos)


@pytest.fixture
async def world(live_database: Database) -> World:
    return await _world(live_database, BATCHES)


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_todo_walks_see_every_visible_todo_once_newest_first(
    live_client: Client, world: World, limit: int
) -> None:
    walks: dict[str, tuple[dict[str, str], Callable[[TodoDAO], bool]]] = {
        "all": ({}, bool),
        "space a1": ({"space_id": str(world.a1)}, lambda t: t.space_id == world.a1),
        "space a2 open": (
            {"space_id": str(world.a2), "done": "false"},
            lambda t: t.space_id == world.a2 and not t.done,
        ),
        "done": ({"done": "true"}, lambda t: t.done),
    }
    if limit == 1:  # a request per todo: walk the widest listing and a small one
        walks = {label: walks[label] for label in ("all", "space a2 open")}
    for label, (filters, predicate) in walks.items():
        items = await _walk(live_client, world.alice, "/todos", limit, **filters)

        assert [item["id"] for item in items] == world.visible(world.alice, predicate), label
        _assert_strictly_newest_first(items)
        assert {item["space_id"] for item in items} <= {str(world.a1), str(world.a2)}

    bobs = await _walk(live_client, world.bob, "/todos", limit)
    assert [item["id"] for item in bobs] == world.visible(world.bob)


async def test_seeded_rows_really_share_created_at(world: World) -> None:
    """Guards the premise of these tests: without ties the id tie-break goes untested."""
    per_instant: dict[Any, int] = {}
    for todo in world.todos:
        per_instant[todo.created_at] = per_instant.get(todo.created_at, 0) + 1

    assert max(per_instant.values()) >= 100
    assert len(per_instant) >= len(BATCHES)


async def test_other_organizations_space_gives_an_empty_last_page(
    live_client: Client, world: World
) -> None:
    for query in ({"space_id": str(world.b1)}, {"space_id": str(uuid.uuid4())}):
        response = await live_client.get("/todos", query_string=query, headers=world.alice.headers)

        assert response.status_code == 200
        assert await response.get_json() == {"items": [], "next_cursor": None}


async def test_writes_during_a_walk_neither_duplicate_nor_skip_older_todos(
    live_client: Client, live_database: Database, world: World
) -> None:
    expected = world.visible(world.alice)
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await (
            await live_client.get("/todos", query_string=query, headers=world.alice.headers)
        ).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
    assert cursor is not None

    # Newer rows arrive (through the API and in one transaction through a DAO), the row the
    # cursor points at goes, and so does one the walk has not reached yet.
    arrived = []
    for number in range(3):
        created = await live_client.post(
            "/todos",
            json={"title": f"late {number}", "space_id": str(world.a2)},
            headers=world.alice.headers,
        )
        assert created.status_code == 201
        arrived.insert(0, (await created.get_json())["id"])
    late = await _seed_todos(live_database, {world.a1: world.alice.id}, 4, "late")
    at_cursor, ahead = seen[-1]["id"], expected[len(seen) + 10]
    for todo_id in (at_cursor, ahead):
        deleted = await live_client.delete(f"/todos/{todo_id}", headers=world.alice.headers)
        assert deleted.status_code == 204

    while cursor is not None:
        page = await (
            await live_client.get(
                "/todos", query_string={"limit": "7", "cursor": cursor}, headers=world.alice.headers
            )
        ).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]

    assert [item["id"] for item in seen] == [i for i in expected if i != ahead]
    fresh = await _walk(live_client, world.alice, "/todos", 100)
    assert [item["id"] for item in fresh] == [
        *_newest_first(late),
        *arrived,
        *(i for i in expected if i not in (at_cursor, ahead)),
    ]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = {
    "not base64": "abc",
    "punctuation": "!!!!",
    "empty key": _cursor("|"),
    "no separator": _cursor("2024-01-01T00:00:00+00:00"),
    "bad date": _cursor(f"yesterday|{uuid.uuid4()}"),
    "bad id": _cursor("2024-01-01T00:00:00+00:00|42"),
    "naive date": _cursor(f"2024-01-01T00:00:00|{uuid.uuid4()}"),
    "binary": base64.urlsafe_b64encode(b"\xff\xfe\x00|").decode(),
    "too long": "A" * 400,
    "earliest date east of UTC": _cursor(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}"),
    "latest date west of UTC": _cursor(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}"),
}


@pytest.mark.parametrize("path", ["/todos", "/spaces"])
async def test_bad_cursors_are_422(live_client: Client, live_database: Database, path: str) -> None:
    caller = await new_caller(live_database)
    outcomes = {}
    for label, cursor in BAD_CURSORS.items():
        response = await live_client.get(
            path, query_string={"cursor": cursor}, headers=caller.headers
        )
        body = await response.get_json()
        locs = [item["loc"] for item in body["detail"]] if response.status_code == 422 else body
        outcomes[label] = (response.status_code, locs)

    assert outcomes == dict.fromkeys(BAD_CURSORS, (422, [["cursor"]]))


async def test_a_valid_cursor_from_nowhere_is_accepted(live_client: Client, world: World) -> None:
    """A cursor is only a position: one built by hand at a known todo continues after it."""
    newest_first = world.visible(world.alice)
    todo = next(t for t in world.todos if str(t.id) == newest_first[9])
    cursor = Keyset(todo.created_at, todo.id).encode()

    response = await live_client.get(
        "/todos", query_string={"cursor": cursor, "limit": "5"}, headers=world.alice.headers
    )

    assert response.status_code == 200
    assert [item["id"] for item in (await response.get_json())["items"]] == newest_first[10:15]


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_space_walks_see_every_visible_space_once_newest_first(
    live_client: Client, live_database: Database, limit: int
) -> None:
    alice, bob, carol = [await new_caller(live_database) for _ in range(3)]
    org_a, org_b = (
        await _organization(live_database, alice),
        await _organization(live_database, bob),
    )
    carols = await _organization(live_database, carol)

    async def join(session: Executor) -> None:
        for organization in (org_a, org_b):
            assert await MembershipDAO.add(session, organization, carol.id, Role.MEMBER)

    await live_database.run(join)
    spaces: list[SpaceRow] = []
    for organization, count in ((org_a, 23), (org_b, 9), (org_a, 4), (carols, 5), (org_b, 1)):

        async def create(
            session: Executor, organization: uuid.UUID = organization, count: int = count
        ) -> list[SpaceRow]:
            return [await SpaceDAO.create(session, organization, f"s{n}") for n in range(count)]

        spaces += await live_database.run(create)

    def expected(*organizations: uuid.UUID) -> list[str]:
        return _newest_first([s for s in spaces if s.organization_id in organizations])

    walks = {
        ("alice", None): (alice, {}, expected(org_a)),
        ("alice", "org b"): (alice, {"organization_id": str(org_b)}, []),
        ("carol", None): (carol, {}, expected(org_a, org_b, carols)),
        ("carol", "org a"): (carol, {"organization_id": str(org_a)}, expected(org_a)),
        ("carol", "org b"): (carol, {"organization_id": str(org_b)}, expected(org_b)),
    }
    for label, (caller, filters, ids) in walks.items():
        items = await _walk(live_client, caller, "/spaces", limit, **filters)

        assert [item["id"] for item in items] == ids, label
        _assert_strictly_newest_first(items)


EXPLAIN_ROWS = 20_000


async def _bulk_todos(database: Database, space_id: uuid.UUID, author: uuid.UUID) -> Keyset:
    """EXPLAIN_ROWS todos in one space by one INSERT ... SELECT, a millisecond apart and every
    third one done; returns the key of the middle one. A table of a few thousand rows fits in
    a few dozen pages, where a sequential scan is the planner's right answer and the test
    would only measure the planner's coin toss."""
    await fetch(
        database,
        text(
            "INSERT INTO todos (title, space_id, user_id, done, created_at) "
            "SELECT 'bulk ' || CAST(n AS TEXT), CAST(:space_id AS UUID), "
            "CAST(:author_id AS UUID), n % 3 = 0, now() - n * INTERVAL '1 millisecond' "
            f"FROM generate_series(1, {EXPLAIN_ROWS}) AS n"
        ),
        {"space_id": space_id, "author_id": author},
    )
    [middle] = await fetch(
        database,
        text(
            "SELECT created_at, id FROM todos WHERE space_id = :space_id AND title LIKE 'bulk %' "
            f"ORDER BY created_at, id OFFSET {EXPLAIN_ROWS // 2} LIMIT 1"
        ),
        {"space_id": space_id},
    )
    return Keyset(middle.created_at, middle.id)


async def test_one_space_page_reads_the_space_index(live_database: Database) -> None:
    """The page query of one space must seek in an index, not scan the todos table: explain
    the very SQL `page_visible` sends (captured from the engine) on a big enough table."""
    world = await _world(live_database, (12,))  # a few todos in every space
    started = time.monotonic()
    middle = await _bulk_todos(live_database, world.a1, world.alice.id)
    print(f"seeded {EXPLAIN_ROWS} todos in {time.monotonic() - started:.2f}s")
    async with live_database.engine.connect() as connection:
        # Outside a transaction: CockroachDB refuses ANALYZE inside one.
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("ANALYZE todos")

    plans = {}
    for label, done, after in (
        ("first page", None, None),
        ("page after a cursor", None, middle),
        ("open todos", False, None),
    ):
        plans[label] = await live_database.run(
            lambda x, done=done, after=after: _explain_page(x, world, done, after)
        )

    for label, plan in plans.items():
        print(f"--- EXPLAIN, {label}:\n{plan}")
        assert "ix_todos_space_id_" in plan, (label, plan)
        assert "Seq Scan on todos" not in plan, (label, plan)
        assert not _full_scan_of_todos(plan), (label, plan)


async def _explain_page(
    executor: Executor, world: World, done: bool | None, after: Keyset | None
) -> str:
    """EXPLAIN of the statement `page_visible` emits, with the parameters it bound."""
    with sent_statements() as captured:
        # A token just issued to alice: the statement checks it is still valid, too.
        alice = Session(world.alice.id, uuid.uuid4(), 0, datetime.now(UTC) + timedelta(hours=1))
        page = await TodoDAO.page_visible(
            executor, alice, space_id=world.a1, done=done, after=after, fetch=51
        )
    assert len(page) == 51
    [(statement, parameters)] = captured
    rows = await executor.connection.fetch(f"EXPLAIN {statement}", *parameters)
    return "\n".join(str(row[0]) for row in rows)


def _full_scan_of_todos(plan: str) -> bool:
    """CockroachDB prints a plan as blocks of `• node` lines; a full scan of todos shows as
    `table: todos@...` and `spans: FULL SCAN` in one block."""
    blocks = plan.split("•")
    return any("todos@" in block and "FULL SCAN" in block for block in blocks)
