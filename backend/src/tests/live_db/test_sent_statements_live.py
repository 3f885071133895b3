"""`sent_statements` sees what the app sends on both paths to the database: the benchmarks'
EXPLAIN and the tests that compare statements rely on it, whichever path a route takes."""

from __future__ import annotations

import uuid

import pytest

from app.db import Database
from app.driver import sent_statements
from app.models import UserDAO

pytestmark = pytest.mark.live_db


async def test_both_paths_are_seen_in_order(live_database: Database) -> None:
    user_id = uuid.uuid4()

    with sent_statements(live_database.engine.sync_engine) as sent:
        await live_database.run_prepared(lambda connection: UserDAO.exists(connection, user_id))
        await live_database.run(lambda session: UserDAO.exists(session, user_id))
    after = len(sent)
    await live_database.run_prepared(lambda connection: UserDAO.exists(connection, user_id))

    assert len(sent) == after == 2
    assert sent[0][0] == sent[1][0]  # the same prebuilt statement, compiled once
    assert [list(args) for _, args in sent] == [[user_id], [user_id]]
