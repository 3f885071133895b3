"""The first response to a POST carrying `Idempotency-Key`, replayed for retries of it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
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
    interval_parameter,
    string_parameter,
    text_parameter,
    uuid_parameter,
)


class IdempotencyKeyRow(Protocol):
    @property
    def request_hash(self) -> str: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def response_body(self) -> str | None: ...
    @property
    def response_headers(self) -> str | None: ...


class IdempotencyKeyDAO(BaseDAO):
    """The key row is claimed in the same transaction that creates the resource, so the two
    commit together or not at all: a retry sees either nothing (and creates) or the stored
    response (and replays it), never a half-done state.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"), Index(None, "expires_at"))

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_headers: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    @classmethod
    async def claim(
        cls,
        executor: Executor,
        user_id: uuid.UUID,
        key: str,
        request_hash: str,
        ttl: timedelta,
    ) -> uuid.UUID | None:
        """Take the key for this request (new, or expired and so free again); None if it is
        held by an earlier request, whose response `find` then returns."""
        params = {"owner_id": user_id, "new_key": key, "new_request_hash": request_hash, "ttl": ttl}
        row = await executor.one_or_none(_CLAIM, params)
        return row.id if row is not None else None

    @classmethod
    async def find(cls, executor: Executor, user_id: uuid.UUID, key: str) -> IdempotencyKeyRow:
        return await executor.one(_FIND, {"owner_id": user_id, "held_key": key})

    @classmethod
    async def complete(
        cls,
        executor: Executor,
        claim_id: uuid.UUID,
        status_code: int,
        response_body: str,
        response_headers: str,
    ) -> None:
        params = {
            "claim_id": claim_id,
            "new_status_code": status_code,
            "new_response_body": response_body,
            "new_response_headers": response_headers,
        }
        await executor.rows(_COMPLETE, params)

    @classmethod
    async def purge_expired(cls, executor: Executor, batch: int = 1000) -> int:
        """Delete up to `batch` expired keys; returns how many went."""
        return len(await executor.rows(_PURGE_EXPIRED, {"batch": batch}))


_new = insert(IdempotencyKeyDAO).values(
    user_id=uuid_parameter("owner_id"),
    key=string_parameter("new_key"),
    request_hash=string_parameter("new_request_hash"),
    expires_at=func.now() + interval_parameter("ttl"),
)
_CLAIM = Statement(
    _new.on_conflict_do_update(
        index_elements=[IdempotencyKeyDAO.user_id, IdempotencyKeyDAO.key],
        set_={
            "request_hash": _new.excluded.request_hash,
            "status_code": None,
            "response_body": None,
            "response_headers": None,
            "expires_at": _new.excluded.expires_at,
            "created_at": func.now(),
            "updated_at": func.now(),
        },
        where=IdempotencyKeyDAO.expires_at <= func.now(),
    ).returning(IdempotencyKeyDAO.id)
)
_FIND = Statement(
    select(*IdempotencyKeyDAO.__table__.c).where(
        IdempotencyKeyDAO.user_id == uuid_parameter("owner_id"),
        IdempotencyKeyDAO.key == string_parameter("held_key"),
    )
)
_COMPLETE = Statement(
    update(IdempotencyKeyDAO)
    .where(IdempotencyKeyDAO.id == uuid_parameter("claim_id"))
    .values(
        status_code=integer_parameter("new_status_code"),
        response_body=text_parameter("new_response_body"),
        response_headers=text_parameter("new_response_headers"),
    )
)
_PURGE_EXPIRED = Statement(
    delete(IdempotencyKeyDAO)
    .where(
        IdempotencyKeyDAO.id.in_(
            select(IdempotencyKeyDAO.id)
            .where(IdempotencyKeyDAO.expires_at <= func.now())
            .limit(integer_parameter("batch"))
        )
    )
    .returning(IdempotencyKeyDAO.id)
)
