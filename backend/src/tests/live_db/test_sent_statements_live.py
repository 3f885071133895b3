"""`sent_statements` sees every statement the app sends, in order, with its arguments: the
benchmarks' EXPLAIN and the tests that count round trips rely on it."""

from __future__ import annotations

import uuid

import pytest

from app.db.database import Database
from app.db.executor import sent_statements
from app.models import UserDAO

pytestmark = pytest.mark.live_db


async def test_statements_are_seen_in_order_whatever_the_scope(live_database: Database) -> None:
    user_id = uuid.uuid4()

    with sent_statements() as sent:
        await live_database.run(lambda x: UserDAO.get(x, user_id), single_statement=True)
        await live_database.run(lambda x: UserDAO.get(x, user_id))
    after = len(sent)
    await live_database.run(lambda x: UserDAO.get(x, user_id), single_statement=True)

    assert len(sent) == after == 2
    assert sent[0][0] == sent[1][0]  # the same prebuilt statement, compiled once
    assert [list(args) for _, args in sent] == [[user_id], [user_id]]
