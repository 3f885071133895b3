"""Users: a unique name and an argon2 password hash."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import String, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.parameters import string_parameter, uuid_parameter


class UserRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class UserDAO(BaseDAO):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)

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
        return await executor.one_or_none(_BY_ID, {"user_id": user_id})

    @classmethod
    async def exists(cls, executor: Executor, user_id: uuid.UUID) -> bool:
        """Whether the user is still there. Asked only after a request found nothing, to
        tell a deleted user's unexpired token (401) from a plain miss (404), so the
        requests that find something never pay for it."""
        return await executor.one_or_none(_EXISTS, {"user_id": user_id}) is not None

    @classmethod
    async def set_password_hash(
        cls, executor: Executor, user_id: uuid.UUID, password_hash: str
    ) -> None:
        """Store a re-hashed password (argon2 parameters changed since it was set)."""
        await executor.rows(
            _SET_PASSWORD_HASH, {"user_id": user_id, "new_password_hash": password_hash}
        )


_USERS = UserDAO.__table__.c
_CREATE = Statement(
    insert(UserDAO)
    .values(name=string_parameter("new_name"), password_hash=string_parameter("new_password_hash"))
    .on_conflict_do_nothing(index_elements=[UserDAO.name])
    .returning(*_USERS)
)
_BY_NAME = Statement(select(*_USERS).where(UserDAO.name == string_parameter("user_name")))
_BY_ID = Statement(select(*_USERS).where(UserDAO.id == uuid_parameter("user_id")))
_EXISTS = Statement(select(UserDAO.id).where(UserDAO.id == uuid_parameter("user_id")))
_SET_PASSWORD_HASH = Statement(
    update(UserDAO)
    .where(UserDAO.id == uuid_parameter("user_id"))
    .values(password_hash=string_parameter("new_password_hash"))
)
