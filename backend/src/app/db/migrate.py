"""Alembic driven from Python: the CLI's `migrate`, `serve` and the tests share this path."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.db.urls import normalise
from app.settings import SOURCE_DIR

ALEMBIC_INI = SOURCE_DIR / "alembic.ini"
MIGRATIONS_DIR = SOURCE_DIR / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's config for this project; `database_url` in any accepted form, or from env.py."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["configure_logger"] = False
    if database_url is not None:
        sync_url = normalise(database_url, "psycopg2").render_as_string(hide_password=False)
        config.attributes["sync_url"] = sync_url
    return config


@cache
def head_revision() -> str:
    """The revision the migrations end at; what `/readyz` expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
