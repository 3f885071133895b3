"""The transaction scope on a real database: commit, rollback, and retry on SQLSTATE 40001.

Two transactions really conflict here (read-modify-write of one row at SERIALIZABLE), so the
retry path is exercised against the server, not simulated.
"""

from __future__ import annotations

import asyncio

import pytest

from app.db.database import Database, RetryPolicy
from app.db.executor import Executor
from app.db.failures import DatabaseBusy, InvalidData
from app.models import UserDAO
from tests.live_db.conflicts import conflicting_append

pytestmark = pytest.mark.live_db


async def _create_user(database: Database, name: str, password_hash: str = "h") -> None:
    await database.run(lambda s: UserDAO.create(s, name, password_hash))


async def test_conflicting_transactions_are_retried_and_no_update_is_lost(
    live_database: Database,
) -> None:
    await _create_user(live_database, "contended")
    both_read = asyncio.Barrier(2)
    retries_before = live_database.stats.retries

    attempts = await asyncio.gather(
        live_database.run(conflicting_append("contended", "a", both_read)),
        live_database.run(conflicting_append("contended", "b", both_read)),
    )

    user = await live_database.run(lambda s: UserDAO.get_by_name(s, "contended"))
    assert user is not None
    assert sorted(user.password_hash) == sorted("hab")  # both appends landed
    assert max(attempts) >= 2
    assert live_database.stats.retries > retries_before


async def test_exhausted_retries_raise_database_busy(live_database: Database) -> None:
    await _create_user(live_database, "contended-once")
    impatient = Database(live_database.settings, RetryPolicy(max_retries=0))
    await impatient.start()
    both_read = asyncio.Barrier(2)
    try:
        results = await asyncio.gather(
            impatient.run(conflicting_append("contended-once", "a", both_read)),
            impatient.run(conflicting_append("contended-once", "b", both_read)),
            return_exceptions=True,
        )
    finally:
        await impatient.stop()

    assert sum(isinstance(r, DatabaseBusy) for r in results) == 1
    assert impatient.stats.exhausted == 1


async def test_an_error_rolls_back_the_whole_unit(live_database: Database) -> None:
    async def create_then_fail(session: Executor) -> None:
        await UserDAO.create(session, "rolled-back", "h")
        raise LookupError("abort")

    with pytest.raises(LookupError):
        await live_database.run(create_then_fail)

    assert await live_database.run(lambda s: UserDAO.get_by_name(s, "rolled-back")) is None


async def test_a_value_the_database_refuses_is_invalid_data_not_a_crash(
    live_database: Database,
) -> None:
    """SQLSTATE class 22 (here 22021, NUL in text) is the client's input: InvalidData, a 422."""
    with pytest.raises(InvalidData):
        await live_database.run(lambda s: UserDAO.create(s, "nul\x00name", "h"))
