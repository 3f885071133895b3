"""Statements about the schema itself rather than any table of the app."""

from __future__ import annotations

from sqlalchemy import text

from app.db.executor import Executor, Statement


class SchemaDAO:
    @classmethod
    async def current_revision(cls, executor: Executor) -> str | None:
        """The Alembic revision the database is at, or None before the first migration."""
        if (await executor.one(_VERSION_TABLE_EXISTS)).found == 0:
            return None
        row = await executor.one_or_none(_REVISION)
        return None if row is None else str(row.version_num)


_VERSION_TABLE_EXISTS = Statement(
    text(
        "SELECT count(*) AS found FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = 'alembic_version'"
    )
)
_REVISION = Statement(text("SELECT version_num FROM alembic_version"))
