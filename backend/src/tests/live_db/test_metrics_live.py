"""/metrics on a real database: pool usage read from the running pool, and transaction retries
(real serialization failures) counted as they happen."""

from __future__ import annotations

import asyncio

import pytest
from quart.typing import TestClientProtocol as QuartClient

from app.db.database import Database, RetryPolicy
from app.db.executor import Executor
from app.db.failures import DatabaseBusy
from app.http.metrics import pool_usage
from app.main import create_app
from app.models import UserDAO
from app.settings import Settings
from tests.live_db.conflicts import conflicting_append
from tests.unit.test_metrics import Samples, sample, scrape, series

pytestmark = pytest.mark.live_db

IDLE_TIMEOUT_SECONDS = 10


def _total(samples: Samples, name: str) -> float:
    return sum(value for (sample_name, _), value in samples.items() if sample_name == name)


async def _idle_pool_samples(client: QuartClient) -> Samples:
    """A scrape taken once no connection is checked out (the app's upkeep task may hold one
    for a moment after it starts)."""
    async with asyncio.timeout(IDLE_TIMEOUT_SECONDS):
        while True:
            samples = await scrape(client)
            if _total(samples, "minor_illusion_db_pool_checked_out") == 0:
                return samples
            await asyncio.sleep(0.05)


async def test_pool_usage_is_read_from_the_running_pool(
    live_client: QuartClient, live_database: Database, live_settings: Settings
) -> None:
    idle = await _idle_pool_samples(live_client)

    async def holding_a_connection(session: Executor) -> float:
        await UserDAO.get_by_name(session, "nobody")  # the session now holds a connection
        usage = pool_usage(live_database)
        return sum(figures.get("checked_out", 0) for figures in usage.values())

    checked_out_meanwhile = await live_database.run(holding_a_connection)

    assert series(idle, "minor_illusion_db_pool_size")
    assert _total(idle, "minor_illusion_db_pool_size") >= live_settings.db_pool_size
    assert checked_out_meanwhile >= 1
    for labels in series(idle, "minor_illusion_db_pool_overflow"):
        assert sample(idle, "minor_illusion_db_pool_overflow", **labels) == 0


async def _create_user(database: Database, name: str) -> None:
    await database.run(lambda s: UserDAO.create(s, name, "h"))


async def test_serialization_retries_are_counted(
    live_client: QuartClient, live_database: Database
) -> None:
    await _create_user(live_database, "contended-metrics")
    before = await scrape(live_client)
    both_read = asyncio.Barrier(2)

    await asyncio.gather(
        live_database.run(conflicting_append("contended-metrics", "a", both_read)),
        live_database.run(conflicting_append("contended-metrics", "b", both_read)),
    )
    after = await scrape(live_client)

    retries = "minor_illusion_db_transaction_retries_total"
    assert sample(after, retries) == live_database.stats.retries
    assert (sample(after, retries) or 0) > (sample(before, retries) or 0)


async def test_exhausted_retries_are_counted(
    live_settings: Settings, live_database: Database
) -> None:
    await _create_user(live_database, "contended-metrics-once")
    impatient = Database(live_settings, RetryPolicy(max_retries=0))
    app = create_app(live_settings, database=impatient)
    both_read = asyncio.Barrier(2)
    async with app.test_app():
        results = await asyncio.gather(
            impatient.run(conflicting_append("contended-metrics-once", "a", both_read)),
            impatient.run(conflicting_append("contended-metrics-once", "b", both_read)),
            return_exceptions=True,
        )
        samples = await scrape(app.test_client())

    assert sum(isinstance(result, DatabaseBusy) for result in results) == 1
    assert sample(samples, "minor_illusion_db_transaction_retries_exhausted_total") == 1
