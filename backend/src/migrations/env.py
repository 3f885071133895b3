"""Alembic's entry point: which database, which metadata, and how to run.

The URL comes, in order, from the caller (`app.migrate` passes it), from DATABASE_URL, or from
the embedded PostgreSQL, which is started for the duration of the command; so
`alembic revision --autogenerate` and `alembic upgrade head` work on a fresh checkout.
Each revision runs in its own transaction: DDL is not transactional on CockroachDB, so small
steps keep a failure easy to see and recover from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app import embedded
from app.database_url import normalise
from app.models import BaseDAO
from app.settings import Settings

config = context.config
target_metadata = BaseDAO.metadata

if config.config_file_name is not None and "sync_url" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

OFFLINE_DEFAULT_URL = "postgresql+psycopg2://"
"""Rendering SQL needs a dialect, not a server; pass -x url=cockroachdb:// for CockroachDB."""


@contextlib.contextmanager
def sync_url() -> Iterator[str]:
    given = config.attributes.get("sync_url") or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    if given:
        yield normalise(given, "psycopg2").render_as_string(hide_password=False)
        return
    settings = Settings()
    if settings.database_url is not None:
        yield normalise(settings.database_url, "psycopg2").render_as_string(hide_password=False)
        return
    with embedded.running(settings.data_dir) as url:
        yield normalise(url, "psycopg2").render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    given = config.attributes.get("sync_url") or context.get_x_argument(as_dictionary=True).get(
        "url", OFFLINE_DEFAULT_URL
    )
    context.configure(
        url=normalise(given, "psycopg2"),
        target_metadata=target_metadata,
        literal_binds=True,
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with sync_url() as url:
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    transaction_per_migration=True,
                    compare_type=True,
                    compare_server_default=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
