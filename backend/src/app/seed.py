"""Demo data for a new user and the notebooks; running it again changes nothing.

Creates the organization `demo` with its team: the owner `demo`, the member `demo-member` and
a few more owners and members (enough for the member list to take several pages and for role
changes to have someone to act on), two spaces and a few dozen todos. A few of those todos
were written by `demo-former`, who then deleted the account: they stay in their space, without
an author (`user_id` null), as any todo of a deleted account does. Passwords are only set when
a user is created, or when one is given explicitly, so re-running never locks anybody out.

The demo password is found one way by `seed` and by the notebooks (`demo_password`):
`DEMO_PASSWORD` (or `seed --password`) when given, else the one kept in the data folder,
made up by the first `seed` that needed it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import structlog

from app.db.database import Database
from app.db.executor import Executor
from app.deletions import PurgeReport, mark_account_deleted, purge_account
from app.kept_secrets import kept_secret
from app.models import Daos, Role
from app.security import hash_password
from app.settings import Settings

log = structlog.get_logger(__name__)

ORGANIZATION = "demo"
OWNER = "demo"
MEMBER = "demo-member"
TEAM = {
    OWNER: Role.OWNER,
    MEMBER: Role.MEMBER,
    "demo-ada": Role.OWNER,
    "demo-ben": Role.MEMBER,
    "demo-chloe": Role.MEMBER,
    "demo-dev": Role.OWNER,
    "demo-emil": Role.MEMBER,
    "demo-fay": Role.MEMBER,
}
"""Every member of the demo organization and their role; the first two as before."""
FORMER_MEMBER = "demo-former"
"""Writes every sixth todo of a new space; then its account is deleted as POST /me/deletion does."""
SPACES = {
    "Welcome": ["Read the README", "Open the API docs at /docs", "Log in as demo-member"],
    "Groceries": ["Coffee", "Oat milk", "Bread", "Apples", "Pasta", "Tomatoes"],
}
TODOS_PER_SPACE = 18
DEMO_PASSWORD_FILE = "demo_password"  # noqa: S105 - a file name
"""In the data folder: the demo password when none is given."""


def demo_password(data_dir: Path | None = None) -> str:
    """The demo users' password: `DEMO_PASSWORD`, else the one kept in the data folder (the
    settings' `DATA_DIR` unless given), which is made up on first use.

    `seed` sets it for the users it creates, and the notebooks log in with it, so both agree
    without anyone copying a printed password around.
    """
    if given := os.environ.get("DEMO_PASSWORD"):
        return given
    folder = data_dir if data_dir is not None else Settings().data_dir
    return kept_secret(folder / DEMO_PASSWORD_FILE, min_length=12, nbytes=12)


async def seed(settings: Settings, password: str | None = None, daos: Daos | None = None) -> None:
    """Create what is missing. With `password` (`--password`, `DEMO_PASSWORD`), every demo
    user gets it; without, the users created now get the kept one (`demo_password`)."""
    daos = daos or Daos.real()
    database = Database.from_settings(settings)
    explicit = password is not None
    password = password if password is not None else demo_password(settings.data_dir)
    password_hash = await hash_password(password)
    await database.start()
    try:
        created, former = await database.run(lambda x: _seed(x, daos, password_hash, explicit))
        if former is not None:
            batch = settings.deletion_batch_size
            await purge_account(database, daos, former, batch, PurgeReport())
    finally:
        await database.stop()
    for name in TEAM:
        if name in created or explicit:
            print(f"demo user {name!r} password: {password}")
        else:
            print(f"demo user {name!r} exists; password unchanged (pass --password to reset it)")
    print(f"demo organization {ORGANIZATION!r} ready with {len(SPACES)} spaces")


async def _seed(
    executor: Executor, daos: Daos, password_hash: str, reset_passwords: bool
) -> tuple[set[str], uuid.UUID | None]:
    """Create what is missing; return the names of the users created now, and the former
    member whose account was deleted now (its todos to hand over)."""
    created: set[str] = set()
    users: dict[str, uuid.UUID] = {}
    for name in TEAM:
        user = await daos.users.get_by_name(executor, name)
        if user is None:
            user = await daos.users.create(executor, name, password_hash)
            assert user is not None  # the name was free a statement ago, in this transaction
            created.add(name)
        elif reset_passwords:
            await daos.users.set_password_hash(executor, user.id, password_hash)
        users[name] = user.id

    organization = await daos.organizations.get_by_name(executor, ORGANIZATION)
    if organization is None:
        organization = await daos.organizations.create_owned(executor, ORGANIZATION, users[OWNER])
        assert organization is not None
    for name, role in TEAM.items():
        await daos.memberships.add(executor, organization.id, users[name], role)

    former: uuid.UUID | None = None
    for space_name, titles in SPACES.items():
        if await daos.spaces.get_by_name(executor, organization.id, space_name) is not None:
            continue
        if former is None:
            former = await _former_member(executor, daos, organization.id, password_hash)
        space = await daos.spaces.create(executor, organization.id, space_name)
        for index in range(TODOS_PER_SPACE):
            author = users[OWNER] if index % 3 else users[MEMBER]
            if index % 6 == 5:
                author = former or author
            await daos.todos.create(
                executor,
                space_id=space.id,
                user_id=author,
                title=f"{titles[index % len(titles)]} #{index + 1}",
                content=f"Demo todo {index + 1} in {space_name}.",
                done=index % 4 == 0,
            )
    if former is not None:
        await mark_account_deleted(executor, daos, former)
    log.info("demo data seeded", organization=ORGANIZATION, users_created=sorted(created))
    return created, former


async def _former_member(
    executor: Executor, daos: Daos, organization_id: uuid.UUID, password_hash: str
) -> uuid.UUID | None:
    """A member who writes some todos and leaves; None if somebody else has the name now."""
    user = await daos.users.create(executor, FORMER_MEMBER, password_hash)
    if user is None:
        return None
    await daos.memberships.add(executor, organization_id, user.id, Role.MEMBER)
    return user.id
