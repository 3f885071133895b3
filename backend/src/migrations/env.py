"""Alembic's entry point: which database, which metadata, and how to run.

The URL comes, in order, from the caller (`app.db.migrate` passes it), from DATABASE_URL, or from
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

from app.db import embedded
from app.db.urls import normalise
from app.models import BaseDAO
from app.settings import Settings

config = context.config
target_metadata = BaseDAO.metadata

# From the `alembic` command line, log as alembic.ini says; from the app, keep the app's logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

OFFLINE_DEFAULT_URL = "postgresql+psycopg2://"
"""Rendering SQL needs a dialect, not a server; pass -x url=cockroachdb:// for CockroachDB."""


def given_url() -> str | None:
    """A URL from the caller (`app.db.migrate`) or from `alembic -x url=...`."""
    url = config.attributes.get("sync_url") or context.get_x_argument(as_dictionary=True).get("url")
    return str(url) if url else None


def psycopg2_url(url: str) -> str:
    return normalise(url, "psycopg2").render_as_string(hide_password=False)


@contextlib.contextmanager
def sync_url() -> Iterator[str]:
    settings = Settings()
    url = given_url() or settings.database_url
    if url is not None:
        yield psycopg2_url(url)
        return
    with embedded.running(settings.data_dir) as embedded_url:
        yield psycopg2_url(embedded_url)


MIGRATION_OPTIONS = {"target_metadata": target_metadata, "transaction_per_migration": True}


def run_migrations_offline() -> None:
    context.configure(
        url=psycopg2_url(given_url() or OFFLINE_DEFAULT_URL),
        literal_binds=True,
        **MIGRATION_OPTIONS,
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
                    compare_type=True,
                    compare_server_default=True,
                    **MIGRATION_OPTIONS,
                )
                with context.begin_transaction():
                    context.run_migrations()
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
