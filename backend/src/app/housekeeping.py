"""Background upkeep of the database while the app serves: rows that no longer count go
(expired idempotency keys, login attempts older than the failure window, revoked tokens
that have expired anyway).

Each worker runs it; the deletes are small batches, so overlapping runs only cost a little
contention, which the transaction scope retries.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from app.db.database import Database, Work
from app.db.failures import DatabaseUnavailable
from app.models import Daos

log = structlog.get_logger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
PURGE_BATCH = 1000


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
        await asyncio.sleep(interval)


async def _purge(database: Database, table: str, purge: Work[int]) -> None:
    try:
        while (purged := await database.run(purge)) == PURGE_BATCH:
            log.info("purged expired rows", table=table, count=purged)
    except DatabaseUnavailable:
        pass  # the next round catches up
    except Exception:  # upkeep must never take the serving app down with it
        log.exception("purging expired rows failed", table=table)
