"""Removing the rows of deleted organizations, spaces and accounts, in bounded batches.

A deletion request only marks its row (`deleted_at`), which hides it and everything under it
at once. The rows go afterwards, here: each batch is its own short transaction of at most
DELETION_BATCH_SIZE rows, so deleting an organization of any size never runs one unbounded
transaction (CockroachDB limits a transaction's size; PostgreSQL would hold its locks for
as long). The marks are the to-do list: work interrupted by a crash, a restart or a
cancelled request is found again by the next pass, on any worker or replica.

Order matters, because each parent's foreign keys cascade: a space's todos go before the
space; an organization's todos, then its spaces, then its memberships before its row; a
deleted account's todos are handed to their spaces (author NULL) before its row goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass, field

import structlog

from app.db.database import Database, Work
from app.db.executor import Executor
from app.db.failures import DatabaseUnavailable
from app.models import Daos
from app.models.organizations import OrganizationRow

log = structlog.get_logger(__name__)

MARKS_PER_PASS = 100
"""How many marked rows of each kind one pass takes on; the next pass takes the rest."""


@dataclass
class PurgeReport:
    """What a pass removed: every batch, as (table, rows), in order."""

    batches: list[tuple[str, int]] = field(default_factory=list)

    def rows(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for table, count in self.batches:
            totals[table] += count
        return totals


async def purge_deleted(database: Database, daos: Daos, batch: int) -> PurgeReport:
    """Finish every deletion marked so far (up to MARKS_PER_PASS of each kind)."""
    report = PurgeReport()
    for space_id in await database.run(lambda x: daos.spaces.deleted(x, MARKS_PER_PASS)):
        await _drain(database, report, "todos", _of_space(daos, space_id, batch), batch)
        await database.run(_space_row(daos, space_id), single_statement=True)
    for org_id in await database.run(lambda x: daos.organizations.deleted(x, MARKS_PER_PASS)):
        await purge_organization(database, daos, org_id, batch, report)
    for user_id in await database.run(lambda x: daos.users.deleted(x, MARKS_PER_PASS)):
        await purge_account(database, daos, user_id, batch, report)
    return report


async def purge_organization(
    database: Database, daos: Daos, organization_id: uuid.UUID, batch: int, report: PurgeReport
) -> None:
    """Remove a deleted organization's todos, spaces and memberships, then its row."""
    organizations, memberships, spaces = daos.organizations, daos.memberships, daos.spaces
    await _drain(
        database,
        report,
        "todos",
        lambda x: daos.todos.purge_batch_of_organization(x, organization_id, batch),
        batch,
    )
    await _drain(
        database, report, "spaces", lambda x: spaces.purge_batch(x, organization_id, batch), batch
    )
    await _drain(
        database,
        report,
        "memberships",
        lambda x: memberships.purge_batch(x, organization_id, batch),
        batch,
    )
    await _drain(
        database,
        report,
        "changes",
        lambda x: daos.changes.purge_organization_batch(x, organization_id, batch),
        batch,
    )
    await database.run(lambda x: organizations.purge(x, organization_id), single_statement=True)


async def purge_account(
    database: Database, daos: Daos, user_id: uuid.UUID, batch: int, report: PurgeReport
) -> None:
    """Hand the account's todos to their spaces, then remove its row."""
    await _drain(
        database,
        report,
        "todos_disowned",
        lambda x: daos.todos.disown_batch(x, user_id, batch),
        batch,
    )
    await database.run(lambda x: daos.users.purge(x, user_id), single_statement=True)


async def mark_account_deleted(
    executor: Executor, daos: Daos, user_id: uuid.UUID
) -> list[OrganizationRow]:
    """Delete an account as far as anyone can see, in the caller's transaction: its
    memberships go, organizations where it is the only member are marked deleted, its name is
    freed and its tokens refused; `purge_account` then hands over its todos. Does nothing and
    returns them when it is the last owner of organizations that others belong to."""
    held = await daos.memberships.held_alone(executor, user_id)
    if held:
        return held
    for organization_id in await daos.memberships.sole_memberships(executor, user_id):
        await daos.organizations.mark_deleted(executor, organization_id, None)
    await daos.memberships.remove_all_of(executor, user_id)
    await daos.sessions.end_all(executor, user_id)
    await daos.users.mark_deleted(executor, user_id)
    return []


def _of_space(daos: Daos, space_id: uuid.UUID, batch: int) -> Work[int]:
    return lambda x: daos.todos.purge_batch_of_space(x, space_id, batch)


def _space_row(daos: Daos, space_id: uuid.UUID) -> Work[bool]:
    return lambda x: daos.spaces.purge(x, space_id)


async def _drain(
    database: Database, report: PurgeReport, table: str, work: Work[int], batch: int
) -> None:
    """Run `work` (one batch) until a batch comes back short."""
    while True:
        removed = await database.run(work, single_statement=True)
        if removed:
            report.batches.append((table, removed))
        if removed < batch:
            return


class Deletions:
    """Each worker's background pass over the marks: at once when this worker marked
    something (`wake`), and every DELETION_INTERVAL_SECONDS for what others left."""

    def __init__(self, database: Database, daos: Daos) -> None:
        self.database = database
        self.daos = daos
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake.set()  # first, whatever a previous run left unfinished
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        settings = self.database.settings
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.deletion_interval_seconds)
            self._wake.clear()
            try:
                report = await purge_deleted(self.database, self.daos, settings.deletion_batch_size)
            except DatabaseUnavailable:
                continue  # the next pass catches up
            except Exception:  # upkeep must never take the serving app down with it
                log.exception("removing deleted rows failed")
                continue
            if report.batches:
                log.info("removed deleted rows", **dict(report.rows()))
