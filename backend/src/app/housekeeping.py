"""Background upkeep of the database while the app serves: rows that no longer count go
(expired idempotency keys, login attempts older than the failure window, revoked tokens
that have expired anyway, change log entries older than CHANGES_RETENTION_SECONDS).

Each worker runs it; the deletes are small batches, so overlapping runs only cost a little
contention, which the transaction scope retries.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import structlog

from app.db.database import Database, Work
from app.db.failures import DatabaseUnavailable
from app.models import Daos

log = structlog.get_logger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
PURGE_BATCH = 1000
HORIZON_INTERVAL_SECONDS = 60.0
"""How often the change log's horizon is written down: the resolution, in time, of the
retention rule (app.models.changes.change_horizons)."""
ORGANIZATIONS_PER_QUERY = 1000


async def purge_expired_rows(
    database: Database, daos: Daos, interval: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Forever: delete expired rows in batches, then sleep `interval`; cancelled at shutdown."""
    window = timedelta(seconds=database.settings.login_failure_window_seconds)
    purges: dict[str, Work[int]] = {
        "idempotency_keys": lambda x: daos.idempotency_keys.purge_expired(x, PURGE_BATCH),
        "login_attempts": lambda x: daos.login_attempts.purge_expired(x, window, PURGE_BATCH),
        "revoked_tokens": lambda x: daos.sessions.purge_expired(x, PURGE_BATCH),
    }
    while True:
        for table, purge in purges.items():
            await _purge(database, table, purge)
        await purge_old_changes(database, daos)
        await asyncio.sleep(interval)


async def take_change_horizons(
    database: Database, daos: Daos, interval: float = HORIZON_INTERVAL_SECONDS
) -> None:
    """Forever: write down the change log's horizon, then sleep `interval`."""
    while True:
        try:
            await database.run(daos.changes.take_horizon, single_statement=True)
        except DatabaseUnavailable:
            pass
        except Exception:  # upkeep must never take the serving app down with it
            log.exception("taking the change log's horizon failed")
        await asyncio.sleep(interval)


async def purge_old_changes(database: Database, daos: Daos) -> int:
    """Remove every organization's log entries older than the retention, in batches; how
    many went. The horizons older than the one that marks the retention go too."""
    retention = timedelta(seconds=database.settings.changes_retention_seconds)
    removed = 0
    try:
        await database.run(lambda x: daos.changes.forget_horizons(x, retention))
        after: uuid.UUID | None = None
        while organizations := await database.run(_organizations_after(daos, after)):
            for organization_id in organizations:
                removed += await _purge_old_of(database, daos, organization_id, retention)
            after = organizations[-1]
    except DatabaseUnavailable:
        pass  # the next round catches up
    except Exception:  # upkeep must never take the serving app down with it
        log.exception("purging old changes failed")
    if removed:
        log.info("purged old changes", count=removed)
    return removed


def _organizations_after(daos: Daos, after: uuid.UUID | None) -> Work[list[uuid.UUID]]:
    return lambda x: daos.organizations.ids_after(x, after, ORGANIZATIONS_PER_QUERY)


async def _purge_old_of(
    database: Database, daos: Daos, organization_id: uuid.UUID, retention: timedelta
) -> int:
    removed = 0
    while True:
        purged = await database.run(
            lambda x: daos.changes.purge_old_batch(x, organization_id, retention, PURGE_BATCH)
        )
        removed += purged
        if purged < PURGE_BATCH:
            return removed


async def _purge(database: Database, table: str, purge: Work[int]) -> None:
    try:
        while (purged := await database.run(purge)) == PURGE_BATCH:
            log.info("purged expired rows", table=table, count=purged)
    except DatabaseUnavailable:
        pass  # the next round catches up
    except Exception:  # upkeep must never take the serving app down with it
        log.exception("purging expired rows failed", table=table)
