"""Failed logins, and logins whose password is being checked, per user name and address."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Boolean, ColumnElement, Index, String, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.parameters import (
    integer_parameter,
    interval_parameter,
    string_parameter,
    uuid_parameter,
)
from app.models.users import UserDAO


@dataclass(frozen=True)
class LoginLimits:
    """How many failed logins one user name, and one client address, may have in `window`,
    and how many more password checks each may have in progress at once beyond that."""

    max_per_user: int
    max_per_address: int
    window: timedelta
    max_concurrent_checks: int = 0


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt recorded as in progress, with the user whose password to check (id and
    hash None when no user has that name)."""

    id: uuid.UUID
    user_id: uuid.UUID | None = None
    password_hash: str | None = None


@dataclass(frozen=True)
class LoginRefused:
    """A limit is reached: nothing was recorded, and the password must not be checked."""

    retry_after_seconds: int


LOGIN_ADDRESS_LENGTH = 64
"""Room for any IP address; longer peer names (not addresses) are cut to it."""

LOGIN_CHECK_TIMEOUT = timedelta(seconds=60)
"""An attempt still in progress after this long was never settled (its process died while
checking the password): from then on it counts as failed."""

IN_PROGRESS_RETRY_AFTER_SECONDS = 1
"""Retry-After when only attempts still in progress make up a limit: they settle within about
a second, and if they succeed the limit is no longer reached."""


def login_retry_after(
    now: datetime, window: timedelta, *limits: tuple[datetime | None, datetime | None]
) -> int | None:
    """Whole seconds until every limit reached frees up, or None when none is reached.

    Each limit is `(reached_since, failed_since)`: the creation time of its (N + C)-th newest
    attempt in the window, counting attempts in progress, and of its N-th newest failed one
    (None: fewer, not reached). With N failures the limit frees up when the N-th newest
    leaves the window; when attempts in progress make up the count, soon.
    """
    waits: list[float] = []
    for reached_since, failed_since in limits:
        if failed_since is not None:
            waits.append((failed_since + window - now).total_seconds())
        elif reached_since is not None:
            waits.append(IN_PROGRESS_RETRY_AFTER_SECONDS)
    if not waits:
        return None
    return max(1, math.ceil(max(waits)))


class LoginAttemptDAO(BaseDAO):
    """Failed logins, and logins whose password is being checked, per user name and address.

    Shared by every worker and replica through the database. An attempt is recorded, as in
    progress, by the same statement that checks the limits, before its password is checked:
    concurrent requests cannot all pass the check before any failure is counted, so no more
    than N + C attempts for one user name (or one address) are ever failed or in progress
    within the window (exactly so at SERIALIZABLE, the default isolation level), where C
    (`max_concurrent_checks`) lets a client log in over several connections at once. A failed
    check leaves its row as a failure; a successful one deletes it with the name's earlier
    failures. Rows older than the window no longer count and are purged.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        # The N-th newest attempt of a name or an address: a short backwards range scan.
        Index(None, "user_name", "created_at"),
        Index(None, "address", "created_at"),
        Index(None, "created_at"),  # the purge
    )

    user_name: Mapped[str] = mapped_column(String(64), nullable=False)
    address: Mapped[str] = mapped_column(String(LOGIN_ADDRESS_LENGTH), nullable=False)
    in_progress: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")

    @classmethod
    async def begin(
        cls, executor: Executor, user_name: str, address: str, limits: LoginLimits
    ) -> LoginAttempt | LoginRefused:
        """Check both limits and, unless one is reached, record the attempt as in progress
        and read the user's password hash: one statement, so one round trip.

        Its reads and its insert are one serializable statement: two concurrent attempts
        that could both exceed a limit conflict, and the loser is re-run (SQLSTATE 40001).
        """
        concurrent = limits.max_concurrent_checks
        parameters = {
            "user_name": user_name,
            "address": address,
            "window": limits.window,
            # The OFFSET of the N-th newest row: N - 1.
            "user_reached": limits.max_per_user + concurrent - 1,
            "user_failed": limits.max_per_user - 1,
            "address_reached": limits.max_per_address + concurrent - 1,
            "address_failed": limits.max_per_address - 1,
        }
        row = await executor.one(_BEGIN, parameters)
        retry_after = login_retry_after(
            row.checked_at,
            limits.window,
            (row.user_reached_since, row.user_failed_since),
            (row.address_reached_since, row.address_failed_since),
        )
        if retry_after is not None:
            return LoginRefused(retry_after)
        return LoginAttempt(id=row.attempt_id, user_id=row.user_id, password_hash=row.password_hash)

    @classmethod
    async def fail(cls, executor: Executor, attempt_id: uuid.UUID) -> None:
        """The password was wrong (or the name unknown): the attempt stays, as a failure."""
        await executor.rows(_FAIL, {"attempt_id": attempt_id})

    @classmethod
    async def succeed(cls, executor: Executor, attempt_id: uuid.UUID, user_name: str) -> None:
        """The password was right: forget the attempt and the name's failures, but not other
        attempts for the name still in progress, which may yet fail."""
        parameters = {"attempt_id": attempt_id, "user_name": user_name}
        await executor.rows(_SUCCEED, parameters)

    @classmethod
    async def purge_expired(cls, executor: Executor, window: timedelta, batch: int = 1000) -> int:
        """Delete up to `batch` attempts older than `window`, which no longer count."""
        return len(await executor.rows(_PURGE_EXPIRED, {"window": window, "batch": batch}))


_attempts = LoginAttemptDAO
_USER_NAME = string_parameter("user_name")
_ADDRESS = string_parameter("address")
_ATTEMPT = uuid_parameter("attempt_id")
_IN_WINDOW = _attempts.created_at > func.now() - interval_parameter("window")
_UNSETTLED_SINCE = func.now() - LOGIN_CHECK_TIMEOUT
_FAILED = or_(~_attempts.in_progress, _attempts.created_at <= _UNSETTLED_SINCE)


def _nth_newest(
    key: ColumnElement[bool], offset: str, *only: ColumnElement[bool]
) -> ColumnElement[datetime]:
    return (
        select(_attempts.created_at)
        .where(key, _IN_WINDOW, *only)
        .order_by(_attempts.created_at.desc())
        .offset(integer_parameter(offset))
        .limit(1)
        .scalar_subquery()
    )


_by_user = _attempts.user_name == _USER_NAME
_by_address = _attempts.address == _ADDRESS
_checked = select(
    _nth_newest(_by_user, "user_reached").label("user_reached_since"),
    _nth_newest(_by_user, "user_failed", _FAILED).label("user_failed_since"),
    _nth_newest(_by_address, "address_reached").label("address_reached_since"),
    _nth_newest(_by_address, "address_failed", _FAILED).label("address_failed_since"),
    func.now().label("checked_at"),
).cte("checked")
_recorded = (
    insert(_attempts)
    .from_select(
        ["user_name", "address"],
        select(_USER_NAME, _ADDRESS).where(
            _checked.c.user_reached_since.is_(None),
            _checked.c.user_failed_since.is_(None),
            _checked.c.address_reached_since.is_(None),
            _checked.c.address_failed_since.is_(None),
        ),
    )
    .returning(_attempts.id)
    .cte("recorded")
)
_BEGIN = Statement(
    select(
        _checked,
        select(_recorded.c.id).scalar_subquery().label("attempt_id"),
        UserDAO.id.label("user_id"),
        UserDAO.password_hash,
    )
    .select_from(_checked)
    .outerjoin(UserDAO, UserDAO.name == _USER_NAME)
)
_FAIL = Statement(
    update(_attempts)
    .where(_attempts.id == _ATTEMPT)
    .values(in_progress=False)
    .returning(_attempts.id)
)
_SUCCEED = Statement(
    delete(_attempts)
    .where(
        _attempts.user_name == _USER_NAME,
        or_(
            _attempts.id == _ATTEMPT,
            ~_attempts.in_progress,
            _attempts.created_at <= _UNSETTLED_SINCE,
        ),
    )
    .returning(_attempts.id)
)
_PURGE_EXPIRED = Statement(
    delete(_attempts)
    .where(
        _attempts.id.in_(
            select(_attempts.id)
            .where(_attempts.created_at <= func.now() - interval_parameter("window"))
            .limit(integer_parameter("batch"))
        )
    )
    .returning(_attempts.id)
)
