"""Who is calling, and which tokens no longer count.

A token names its user, its own id (`jti`) and the user's token generation when it was
issued. It is refused once its id is among the revoked tokens (logout) or once the user's
generation has moved on (logout everywhere, a password change, account deletion). Both live in
the database, so every worker and replica refuses it from the next request on.

The hot routes put `session_is_valid` into the WHERE of their one statement (two primary-key
lookups beside the membership check), so checking costs no round trip; other routes ask
`RevokedTokenDAO.is_valid` first. A revoked token's row is kept only until the token would
have expired anyway, then purged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    DateTime,
    Exists,
    ForeignKey,
    Index,
    delete,
    exists,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.parameters import (
    integer_parameter,
    timestamp_parameter,
    uuid_parameter,
)
from app.models.users import UserDAO


@dataclass(frozen=True)
class Caller:
    """The authenticated caller, as their token names them."""

    user_id: uuid.UUID
    token_id: uuid.UUID
    generation: int
    expires_at: datetime

    def parameters(self) -> dict[str, object]:
        """The bind parameters of `session_is_valid` (and of `caller_id` everywhere)."""
        return {
            "caller_id": self.user_id,
            "caller_token": self.token_id,
            "caller_generation": self.generation,
        }


class RevokedTokenDAO(BaseDAO):
    """Tokens logged out before they expired: the id is the token's `jti`."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index(None, "expires_at"), Index(None, "user_id"))

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    @classmethod
    async def is_valid(cls, executor: Executor, caller: Caller) -> bool:
        """Whether the caller's token still counts: the user is there, in the token's
        generation, and the token was not logged out."""
        row = await executor.one(_IS_VALID, caller.parameters())
        return bool(row.valid)

    @classmethod
    async def revoke(cls, executor: Executor, caller: Caller) -> None:
        """Refuse the caller's token from now on (logout); other tokens stay valid."""
        params = {
            "caller_token": caller.token_id,
            "caller_id": caller.user_id,
            "token_expires_at": caller.expires_at,
        }
        await executor.rows(_REVOKE, params)

    @classmethod
    async def purge_expired(cls, executor: Executor, batch: int = 1000) -> int:
        """Forget up to `batch` revoked tokens that have expired anyway; how many went."""
        return len(await executor.rows(_PURGE_EXPIRED, {"batch": batch}))


_CALLER = uuid_parameter("caller_id")
_TOKEN = uuid_parameter("caller_token")
_GENERATION = integer_parameter("caller_generation")


def session_is_valid() -> Exists:
    """The caller's token still counts (see `RevokedTokenDAO.is_valid`): for the WHERE of a
    statement that takes `Caller.parameters()`. One subquery, planned once per statement."""
    return exists().where(
        UserDAO.id == _CALLER,
        UserDAO.token_generation == _GENERATION,
        UserDAO.deleted_at.is_(None),
        ~exists().where(RevokedTokenDAO.id == _TOKEN),
    )


_IS_VALID = Statement(select(session_is_valid().label("valid")))
_REVOKE = Statement(
    insert(RevokedTokenDAO)
    .from_select(
        ["id", "user_id", "expires_at"],
        # Only while the user is there: an account deleted meanwhile took its tokens along.
        select(_TOKEN, UserDAO.id, timestamp_parameter("token_expires_at")).where(
            UserDAO.id == _CALLER
        ),
    )
    .on_conflict_do_nothing(index_elements=[RevokedTokenDAO.id])
)
_expired = (
    select(RevokedTokenDAO.id)
    .where(RevokedTokenDAO.expires_at < func.now())
    .limit(integer_parameter("batch"))
    .scalar_subquery()
)
_PURGE_EXPIRED = Statement(
    delete(RevokedTokenDAO).where(RevokedTokenDAO.id.in_(_expired)).returning(RevokedTokenDAO.id)
)
