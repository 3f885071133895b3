"""Who is calling, and which tokens no longer count.

A token names its user, its own id (`jti`) and the user's token generation when it was
issued. It is refused once its id is among the revoked tokens (logout) or once the user's
generation has moved on (logout everywhere, a password change, account deletion). Both live in
the database, so every worker and replica refuses it from the next request on.

Moving the generation on (`RevokedTokenDAO.end_all`) also stores a row for the generation it
retires, keyed by `generation_key(user, generation)`. So one probe of the revoked tokens'
primary key, for the token's own id and its generation's key, answers for both kinds of
revocation: the hot routes put that probe (`token_not_revoked`) into the WHERE of their one
statement, beside the membership check, and never read the users table. A deleted account has
no memberships left, so those statements find nothing for it either. Other routes ask
`RevokedTokenDAO.is_valid` first, which also reads the user's row. A row is kept only until
every token it refuses would have expired anyway, then purged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import MappingProxyType

from sqlalchemy import (
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    delete,
    exists,
    func,
    select,
    update,
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
from app.settings import MAX_TOKEN_TTL_SECONDS

_GENERATIONS = uuid.UUID("5d1c3f0e-7a9b-4e52-8c1d-2b6f0a9e4c37")
RETIRED_GENERATION_KEPT = timedelta(seconds=MAX_TOKEN_TTL_SECONDS, hours=1)
"""How long the row of a retired generation is kept: longer than any token can live (the
longest TTL the settings allow, whatever this replica's own), with an hour to spare for a
login that read the old generation just before it moved on."""


def generation_key(user_id: uuid.UUID, generation: int) -> uuid.UUID:
    """The revoked-token id standing for every token of `user_id` issued in `generation`:
    derived, so a request computes it from its token without reading anything."""
    return uuid.uuid5(_GENERATIONS, f"{user_id}/{generation}")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller, as their token names them."""

    user_id: uuid.UUID
    token_id: uuid.UUID
    generation: int
    expires_at: datetime

    @cached_property
    def generation_key(self) -> uuid.UUID:
        return generation_key(self.user_id, self.generation)

    def parameters(self) -> Mapping[str, object]:
        """The bind parameters of `token_not_revoked` and `RevokedTokenDAO.is_valid` (and of
        `caller_id` everywhere): computed once per caller, read-only."""
        return self._parameters

    @cached_property
    def _parameters(self) -> Mapping[str, object]:
        return MappingProxyType(
            {
                "caller_id": self.user_id,
                "caller_token": self.token_id,
                "caller_generation": self.generation,
                "caller_generation_key": self.generation_key,
            }
        )


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
    async def end_all(cls, executor: Executor, user_id: uuid.UUID) -> int | None:
        """Refuse every token of the user issued so far (logout everywhere, a password change,
        account deletion): move the generation on and store the retired one's key. The new
        generation, for a token that replaces them; None if the user is gone."""
        row = await executor.one_or_none(_NEXT_GENERATION, {"user_id": user_id})
        if row is None:
            return None
        generation = int(row.token_generation)
        params = {
            "retired_key": generation_key(user_id, generation - 1),
            "user_id": user_id,
            "retired_until": datetime.now(UTC) + RETIRED_GENERATION_KEPT,
        }
        await executor.rows(_RETIRE_GENERATION, params)
        return generation

    @classmethod
    async def purge_expired(cls, executor: Executor, batch: int = 1000) -> int:
        """Forget up to `batch` revoked tokens that have expired anyway; how many went."""
        return len(await executor.rows(_PURGE_EXPIRED, {"batch": batch}))


_CALLER = uuid_parameter("caller_id")
_TOKEN = uuid_parameter("caller_token")
_GENERATION = integer_parameter("caller_generation")
_GENERATION_KEY = uuid_parameter("caller_generation_key")


def token_not_revoked() -> ColumnElement[bool]:
    """Neither the caller's token nor its generation was revoked: for the WHERE of a
    statement that takes `Caller.parameters()` and checks membership too (which a deleted
    account has lost). One probe of a primary key, for two values."""
    return ~exists().where(RevokedTokenDAO.id.in_([_TOKEN, _GENERATION_KEY]))


_IS_VALID = Statement(
    select(
        exists()
        .where(
            UserDAO.id == _CALLER,
            UserDAO.token_generation == _GENERATION,
            UserDAO.deleted_at.is_(None),
            token_not_revoked(),
        )
        .label("valid")
    )
)
_USER = uuid_parameter("user_id")
_NEXT_GENERATION = Statement(
    update(UserDAO)
    .where(UserDAO.id == _USER, UserDAO.deleted_at.is_(None))
    .values(token_generation=UserDAO.token_generation + 1, updated_at=func.now())
    .returning(UserDAO.token_generation)
)
_RETIRE_GENERATION = Statement(
    insert(RevokedTokenDAO)
    .values(
        id=uuid_parameter("retired_key"),
        user_id=_USER,
        expires_at=timestamp_parameter("retired_until"),
    )
    .on_conflict_do_nothing(index_elements=[RevokedTokenDAO.id])
)
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
