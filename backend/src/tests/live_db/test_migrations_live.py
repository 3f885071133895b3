"""Migrations: they match the models, and they go up, down and up again on a real database."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app.db import migrate
from app.db.urls import normalise
from app.models import BaseDAO
from app.models.sessions import RETIRED_GENERATION_KEPT, generation_key
from tests.conftest import create_database

pytestmark = pytest.mark.live_db

APP_TABLES = {table.name for table in BaseDAO.metadata.sorted_tables}


@pytest.fixture
def scratch_url(database_url: str) -> str:
    """An empty database beside the test database, on the same server."""
    return create_database(database_url, "minor_illusion_migrations")


def _tables_and_diff(url: str) -> tuple[set[str], list[object]]:
    engine = create_engine(normalise(url, "psycopg2"))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            diff = compare_metadata(
                MigrationContext.configure(
                    connection, opts={"compare_type": True, "compare_server_default": True}
                ),
                BaseDAO.metadata,
            )
    finally:
        engine.dispose()
    return tables, diff


def test_models_and_migrations_agree(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)

    tables, diff = _tables_and_diff(scratch_url)

    assert tables >= APP_TABLES
    assert diff == [], f"models and migrations disagree; autogenerate would emit: {diff}"


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    migrate.downgrade(scratch_url, "base")

    tables, _ = _tables_and_diff(scratch_url)
    assert tables & APP_TABLES == set()

    migrate.upgrade(scratch_url)

    tables, diff = _tables_and_diff(scratch_url)
    assert tables >= APP_TABLES
    assert diff == []


@pytest.mark.parametrize("dialect_url", ["cockroachdb://", "postgresql://"])
def test_offline_sql_renders_for_each_dialect(dialect_url: str) -> None:
    """`alembic upgrade head --sql`: the DDL a reviewer reads before it runs in production."""
    config = migrate.alembic_config()
    config.cmd_opts = type("Options", (), {"x": [f"url={dialect_url}"]})()  # type: ignore[assignment]
    output = io.StringIO()
    config.stdout = output
    with redirect_stdout(output):
        command.upgrade(config, "head", sql=True)

    sql = output.getvalue()
    for table in APP_TABLES:
        assert f"CREATE TABLE {table}" in sql
    assert "gen_random_uuid()" in sql
    assert "SERIAL" not in sql.upper()
    assert "SEQUENCE" not in sql.upper()


def test_generations_retired_before_the_upgrade_are_refused_after_it(scratch_url: str) -> None:
    """e7b2c4d6f801 stores a row for every generation a user had already retired, under the
    key the application derives, so the hot statements refuse those tokens from then on."""
    migrate.upgrade(scratch_url, "d41e7b9c0a55")
    engine = create_engine(normalise(scratch_url, "psycopg2"))
    try:
        with engine.begin() as connection:
            moved_on, fresh = (
                connection.execute(
                    text(
                        "INSERT INTO users (name, password_hash, token_generation) "
                        "VALUES (:name, 'x', :generation) RETURNING id"
                    ),
                    {"name": name, "generation": generation},
                ).scalar_one()
                for name, generation in (("moved-on", 3), ("fresh", 0))
            )
        migrate.upgrade(scratch_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, user_id, expires_at - now() AS kept FROM revoked_tokens")
            ).all()
    finally:
        engine.dispose()

    assert {(row.id, row.user_id) for row in rows} == {
        (generation_key(moved_on, old), moved_on) for old in range(3)
    }
    assert fresh not in {row.user_id for row in rows}
    assert all(row.kept > RETIRED_GENERATION_KEPT - timedelta(minutes=5) for row in rows)
