"""SQL only tests send: rows read and written past the DAOs' visibility rules, to set up a
case or to check what a request stored."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import delete
from sqlalchemy.sql.elements import ClauseElement

from app.db.database import Database
from app.db.executor import NO_PARAMETERS, Executor, Row, Statement
from app.models import BaseDAO, UserDAO


async def fetch(
    database: Database, clause: ClauseElement, params: Mapping[str, object] = NO_PARAMETERS
) -> list[Row]:
    """Run any statement in a transaction of its own and return its rows."""
    statement = Statement(clause)
    return await database.run(lambda executor: executor.rows(statement, params))


async def delete_user(database: Database, user_id: uuid.UUID) -> bool:
    """Delete a user row at once, past the API (memberships go by cascade, todos lose their
    author); False if absent."""
    gone = await fetch(database, delete(UserDAO).where(UserDAO.id == user_id).returning(UserDAO.id))
    return bool(gone)


async def empty_app_tables(database: Database) -> None:
    """Delete every row of the app's tables (not the migration state): test isolation.

    DELETE rather than TRUNCATE: CockroachDB treats TRUNCATE as a schema change, which does
    not mix with the explicit transaction every unit of work runs in.
    """
    statements = [Statement(table.delete()) for table in reversed(BaseDAO.metadata.sorted_tables)]

    async def empty(executor: Executor) -> None:
        for statement in statements:
            await executor.rows(statement)

    await database.run(empty)
