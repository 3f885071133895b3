"""Background upkeep of the database while the app serves: expired idempotency keys go.

Each worker runs it; the deletes are small batches, so overlapping runs only cost a little
contention, which the transaction scope retries.
"""

from __future__ import annotations

import asyncio

import structlog

from app.db import Database, DatabaseUnavailable
from app.models import Daos

log = structlog.get_logger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
PURGE_BATCH = 1000


async def purge_expired_idempotency_keys(
    database: Database, daos: Daos, interval: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Forever: delete expired keys in batches, then sleep `interval`; cancelled at shutdown."""
    while True:
        try:
            while (
                purged := await database.run(
                    lambda s: daos.idempotency_keys.purge_expired(s, PURGE_BATCH)
                )
            ) == PURGE_BATCH:
                log.info("purged expired idempotency keys", count=purged)
        except DatabaseUnavailable:
            pass  # the next round catches up
        except Exception:  # upkeep must never take the serving app down with it
            log.exception("purging expired idempotency keys failed")
        await asyncio.sleep(interval)
