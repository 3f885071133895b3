"""A unit of work built to conflict at SERIALIZABLE, for the tests of retries and of what
/metrics says about them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.db.executor import Executor
from app.models import UserDAO


def conflicting_append(
    name: str, suffix: str, both_read: asyncio.Barrier
) -> Callable[[Executor], Awaitable[int]]:
    """Read the user's row, wait (first attempt only) until the other unit has read it too,
    then write from what was read: one of the two fails with SQLSTATE 40001. Returns how many
    attempts it took."""
    attempts = 0

    async def work(session: Executor) -> int:
        nonlocal attempts
        attempts += 1
        user = await UserDAO.get_by_name(session, name)
        assert user is not None
        if attempts == 1:
            await both_read.wait()
        await UserDAO.set_password_hash(session, user.id, user.password_hash + suffix)
        return attempts

    return work
