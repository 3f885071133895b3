"""Users: a unique name, an argon2 password hash, and the generation of their tokens.

Deleting an account frees its name at once (it becomes NULL, which a unique column allows any
number of times) and leaves the row, marked `deleted_at`, until the todos it wrote have been
handed over in bounded batches (`app.deletions`); then the row goes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import DateTime, Index, Integer, String, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.parameters import integer_parameter, string_parameter, uuid_parameter


class UserRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def token_generation(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...


class UserDAO(BaseDAO):
    __tablename__ = "users"
    __table_args__ = (Index(None, "deleted_at"),)

    name: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    """NULL once the account is deleted: the name is free again at once."""
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    token_generation: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    """Every token carries the generation it was issued in; moving it on (logout everywhere, a
    password change, deletion: `RevokedTokenDAO.end_all`) refuses every token issued before."""
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @classmethod
    async def create(cls, executor: Executor, name: str, password_hash: str) -> UserRow | None:
        """Insert a user; None when the name is taken (no exception, no second statement)."""
        return await executor.one_or_none(
            _CREATE, {"new_name": name, "new_password_hash": password_hash}
        )

    @classmethod
    async def get_by_name(cls, executor: Executor, name: str) -> UserRow | None:
        return await executor.one_or_none(_BY_NAME, {"user_name": name})

    @classmethod
    async def get(cls, executor: Executor, user_id: uuid.UUID) -> UserRow | None:
        """The user, unless deleted."""
        return await executor.one_or_none(_BY_ID, {"user_id": user_id})

    @classmethod
    async def set_password_hash(
        cls, executor: Executor, user_id: uuid.UUID, password_hash: str
    ) -> None:
        """Store a re-hashed password (argon2 parameters changed since it was set)."""
        await executor.rows(
            _SET_PASSWORD_HASH, {"user_id": user_id, "new_password_hash": password_hash}
        )

    @classmethod
    async def change_password(
        cls, executor: Executor, user_id: uuid.UUID, password_hash: str
    ) -> bool:
        """Store a new password; False if the user is gone. The caller also ends the tokens
        issued so far (`RevokedTokenDAO.end_all`), in the same transaction."""
        params = {"user_id": user_id, "new_password_hash": password_hash}
        return await executor.one_or_none(_CHANGE_PASSWORD, params) is not None

    @classmethod
    async def mark_deleted(cls, executor: Executor, user_id: uuid.UUID) -> bool:
        """Delete the account as far as anyone can see: name freed. The row stays until
        `purge` has handed over the todos it wrote; its tokens are ended apart
        (`RevokedTokenDAO.end_all`, first: it asks for a live user)."""
        return await executor.one_or_none(_MARK_DELETED, {"user_id": user_id}) is not None

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        """Accounts deleted but not yet purged, oldest first."""
        rows = await executor.rows(_DELETED, {"batch": limit})
        return [row.id for row in rows]

    @classmethod
    async def purge(cls, executor: Executor, user_id: uuid.UUID) -> bool:
        """Remove a deleted account's row (its todos handed over first); False if still live."""
        return await executor.one_or_none(_PURGE, {"user_id": user_id}) is not None


_USERS = UserDAO.__table__.c
_USER = uuid_parameter("user_id")
_LIVE = UserDAO.deleted_at.is_(None)
_CREATE = Statement(
    insert(UserDAO)
    .values(name=string_parameter("new_name"), password_hash=string_parameter("new_password_hash"))
    .on_conflict_do_nothing(index_elements=[UserDAO.name])
    .returning(*_USERS)
)
_BY_NAME = Statement(select(*_USERS).where(UserDAO.name == string_parameter("user_name")))
_BY_ID = Statement(select(*_USERS).where(UserDAO.id == _USER, _LIVE))
_SET_PASSWORD_HASH = Statement(
    update(UserDAO)
    .where(UserDAO.id == _USER, _LIVE)
    .values(password_hash=string_parameter("new_password_hash"))
)
_CHANGE_PASSWORD = Statement(
    update(UserDAO)
    .where(UserDAO.id == _USER, _LIVE)
    .values(password_hash=string_parameter("new_password_hash"), updated_at=func.now())
    .returning(UserDAO.id)
)
_MARK_DELETED = Statement(
    update(UserDAO)
    .where(UserDAO.id == _USER, _LIVE)
    .values(name=None, deleted_at=func.now(), updated_at=func.now())
    .returning(UserDAO.id)
)
_DELETED = Statement(
    select(UserDAO.id)
    .where(UserDAO.deleted_at.is_not(None))
    .order_by(UserDAO.deleted_at)
    .limit(integer_parameter("batch"))
)
_PURGE = Statement(
    delete(UserDAO)
    .where(UserDAO.id == _USER, UserDAO.deleted_at.is_not(None))
    .returning(UserDAO.id)
)
