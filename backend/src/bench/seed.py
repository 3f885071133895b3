"""The benchmark's data: migrated schema, one user, organization and space, N todos.

Written through the DAOs and `Database.run`, like the service writes, in one transaction so
seeding 1000 todos takes about a second. The password gets a real argon2 hash, so the login
runs measure the real cost of a login.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.db import migrate
from app.db.database import Database
from app.db.executor import Executor
from app.models import OrganizationDAO, SpaceDAO, TodoDAO, UserDAO
from app.security import hash_password
from app.settings import Settings
from bench.servers import BENCH_SECRET_KEY

BENCH_USER = "bench"
BENCH_PASSWORD = "bench password, not a secret"  # noqa: S105 - a throwaway database


@dataclass(frozen=True)
class Seeded:
    """What the load needs to know about the data: who logs in, where todos live."""

    user_name: str
    password: str
    organization_id: uuid.UUID
    space_id: uuid.UUID
    todo_ids: tuple[uuid.UUID, ...]


def bench_settings(database_url: str, data_dir: Path) -> Settings:
    """The service's settings for the benchmark's own connection (env still applies)."""
    return Settings(
        database_url=database_url,
        secret_key=BENCH_SECRET_KEY,
        data_dir=data_dir,
        log_level="WARNING",
    )


def prepare(settings: Settings, todos: int) -> Seeded:
    """Migrate to head, then seed; both against `settings.database_url`."""
    assert settings.database_url is not None
    migrate.upgrade(settings.database_url)
    return asyncio.run(_seed(settings, todos))


async def _seed(settings: Settings, todos: int) -> Seeded:
    password_hash = await hash_password(BENCH_PASSWORD)
    database = Database.from_settings(settings)
    await database.start()

    async def insert_all(executor: Executor) -> Seeded:
        user = await UserDAO.create(executor, BENCH_USER, password_hash)
        if user is None:
            raise RuntimeError(f"user {BENCH_USER!r} already exists in a fresh database")
        organization = await OrganizationDAO.create_owned(executor, "bench", user.id)
        if organization is None:
            raise RuntimeError("organization 'bench' already exists in a fresh database")
        space = await SpaceDAO.create(executor, organization.id, "bench")
        ids = []
        for number in range(todos):
            todo = await TodoDAO.create(
                executor,
                space_id=space.id,
                user_id=user.id,
                title=f"bench todo {number}",
                content=f"seeded for the load benchmark, number {number}",
                done=number % 3 == 0,
            )
            ids.append(todo.id)
        return Seeded(BENCH_USER, BENCH_PASSWORD, organization.id, space.id, tuple(ids))

    try:
        return await database.run(insert_all)
    finally:
        await database.stop()
