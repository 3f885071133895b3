"""Spaces: the containers of todos inside an organization, visible to its members.

Deleting a space only marks it (`deleted_at`): every statement that reads spaces asks for
live ones, so the space and its todos are gone for everyone at once, and their rows are then
removed in bounded batches (`app.deletions`).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import DateTime, ForeignKey, Index, String, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO, Role
from app.models.changes import WritePosition, change_position_column, recorded
from app.models.organizations import MembershipDAO, membership_of, organization_is_live
from app.models.parameters import (
    after_cursor,
    integer_parameter,
    keyset_arguments,
    newest_first,
    string_parameter,
    uuid_parameter,
)
from app.pagination import Keyset


class SpaceRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def organization_id(self) -> uuid.UUID: ...
    @property
    def created_at(self) -> datetime: ...


class SpaceDAO(BaseDAO):
    __tablename__ = "spaces"
    __table_args__ = (
        Index(None, "organization_id", "created_at", "id"),
        Index(None, "deleted_at"),
    )

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    change_position: Mapped[Decimal] = change_position_column()
    """The position of the latest write (app.models.changes)."""

    @classmethod
    async def create(cls, executor: Executor, organization_id: uuid.UUID, name: str) -> SpaceRow:
        """Insert without a visibility check: for seeding, where the organization is known."""
        params = {"organization_id": organization_id, "new_name": name}
        return await executor.one(_CREATE, params)

    @classmethod
    async def create_visible(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        """Create a space if `user_id` is a member of the organization; None otherwise."""
        params = {"organization_id": organization_id, "caller_id": user_id, "new_name": name}
        return await executor.one_or_none(_CREATE_VISIBLE, params)

    @classmethod
    async def get_visible(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> SpaceRow | None:
        return await executor.one_or_none(_VISIBLE, {"space_id": space_id, "caller_id": user_id})

    @classmethod
    async def page_visible(
        cls,
        executor: Executor,
        user_id: uuid.UUID,
        *,
        organization_id: uuid.UUID | None,
        after: Keyset | None,
        fetch: int,
    ) -> list[SpaceRow]:
        """Up to `fetch` spaces the caller can see, newest first, after the cursor."""
        params: dict[str, object] = {"caller_id": user_id, "fetch": fetch}
        if organization_id is not None:
            params["organization_id"] = organization_id
        params.update(keyset_arguments(after))
        statement = _PAGES[organization_id is not None, after is not None]
        return list(await executor.rows(statement, params))

    @classmethod
    async def get_by_name(
        cls, executor: Executor, organization_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        """The oldest space of that name in the organization (names are not unique)."""
        params = {"organization_id": organization_id, "space_name": name}
        return await executor.one_or_none(_BY_NAME, params)

    @classmethod
    async def rename(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        """Rename it if the caller owns its organization; None otherwise (see `role_in`)."""
        params = {"space_id": space_id, "caller_id": user_id, "new_name": name}
        return await executor.one_or_none(_RENAME, params)

    @classmethod
    async def mark_deleted(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> bool:
        """Delete the space as far as anyone can see, if the caller owns its organization;
        its todos and its row go later, in batches."""
        params = {"space_id": space_id, "caller_id": user_id}
        return await executor.one_or_none(_MARK_DELETED, params) is not None

    @classmethod
    async def role_in(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        """The caller's role in the space's organization; None if they cannot see the space."""
        row = await executor.one_or_none(_ROLE_IN, {"space_id": space_id, "caller_id": user_id})
        return Role(row.role) if row is not None else None

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        """Spaces deleted whose rows are not removed yet, oldest first."""
        return [row.id for row in await executor.rows(_DELETED, {"batch": limit})]

    @classmethod
    async def purge_batch(cls, executor: Executor, organization_id: uuid.UUID, batch: int) -> int:
        """Remove up to `batch` spaces of a deleted organization (their todos gone first)."""
        params = {"organization_id": organization_id, "batch": batch}
        return len(await executor.rows(_PURGE_BATCH, params))

    @classmethod
    async def purge(cls, executor: Executor, space_id: uuid.UUID) -> bool:
        """Remove a deleted space's own row, once its todos are gone."""
        return await executor.one_or_none(_PURGE, {"space_id": space_id}) is not None


_SPACES = SpaceDAO.__table__.c
_SPACE = uuid_parameter("space_id")
_ORGANIZATION = uuid_parameter("organization_id")
_CALLER = uuid_parameter("caller_id")
_LIVE = SpaceDAO.deleted_at.is_(None)
_RETURNED = [c for c in _SPACES if c.name not in {"deleted_at", "change_position"}]

_CREATE = Statement(
    recorded(
        insert(SpaceDAO)
        .values(
            organization_id=_ORGANIZATION,
            name=string_parameter("new_name"),
            change_position=WritePosition(),
        )
        .returning(*_RETURNED),
        kind="space",
        deleted=False,
    )
)
_CREATE_VISIBLE = Statement(
    recorded(
        insert(SpaceDAO)
        .from_select(
            ["organization_id", "name", "change_position"],
            select(_ORGANIZATION, string_parameter("new_name"), WritePosition()).where(
                membership_of(_CALLER, _ORGANIZATION)
            ),
        )
        .returning(*_RETURNED),
        kind="space",
        deleted=False,
    )
)
_VISIBLE = Statement(
    select(*_RETURNED).where(
        SpaceDAO.id == _SPACE, _LIVE, membership_of(_CALLER, SpaceDAO.organization_id)
    )
)
_BY_NAME = Statement(
    select(*_RETURNED)
    .where(
        SpaceDAO.organization_id == _ORGANIZATION,
        SpaceDAO.name == string_parameter("space_name"),
        _LIVE,
    )
    .order_by(SpaceDAO.created_at, SpaceDAO.id)
    .limit(1)
)
_owned_by_caller = membership_of(_CALLER, SpaceDAO.organization_id, role=Role.OWNER)
_RENAME = Statement(
    recorded(
        update(SpaceDAO)
        .where(SpaceDAO.id == _SPACE, _LIVE, _owned_by_caller)
        .values(
            name=string_parameter("new_name"),
            updated_at=func.now(),
            change_position=WritePosition(),
        )
        .returning(*_RETURNED),
        kind="space",
        deleted=False,
    )
)
_MARK_DELETED = Statement(
    recorded(
        update(SpaceDAO)
        .where(SpaceDAO.id == _SPACE, _LIVE, _owned_by_caller)
        .values(deleted_at=func.now(), updated_at=func.now(), change_position=WritePosition())
        .returning(SpaceDAO.id, SpaceDAO.organization_id),
        kind="space",
        deleted=True,
        returning=["id"],
    )
)
_ROLE_IN = Statement(
    select(MembershipDAO.role)
    .join(SpaceDAO, SpaceDAO.organization_id == MembershipDAO.organization_id)
    .where(
        SpaceDAO.id == _SPACE,
        _LIVE,
        MembershipDAO.user_id == _CALLER,
        organization_is_live(SpaceDAO.organization_id),
    )
)
_DELETED = Statement(
    select(SpaceDAO.id)
    .where(SpaceDAO.deleted_at.is_not(None))
    .order_by(SpaceDAO.deleted_at)
    .limit(integer_parameter("batch"))
)
_PURGE_BATCH = Statement(
    delete(SpaceDAO)
    .where(
        SpaceDAO.id.in_(
            select(SpaceDAO.id)
            .where(SpaceDAO.organization_id == _ORGANIZATION)
            .limit(integer_parameter("batch"))
        )
    )
    .returning(SpaceDAO.id)
)
_PURGE = Statement(
    delete(SpaceDAO)
    .where(SpaceDAO.id == _SPACE, SpaceDAO.deleted_at.is_not(None))
    .returning(SpaceDAO.id)
)


def _page(by_organization: bool, after: bool) -> Statement:
    stmt = (
        select(*_RETURNED)
        .join(
            MembershipDAO,
            and_(
                MembershipDAO.organization_id == SpaceDAO.organization_id,
                MembershipDAO.user_id == _CALLER,
            ),
        )
        .where(_LIVE, organization_is_live(SpaceDAO.organization_id))
        .order_by(*newest_first(SpaceDAO.created_at, SpaceDAO.id))
        .limit(integer_parameter("fetch"))
    )
    if by_organization:
        stmt = stmt.where(SpaceDAO.organization_id == _ORGANIZATION)
    if after:
        stmt = stmt.where(after_cursor(SpaceDAO.created_at, SpaceDAO.id))
    return Statement(stmt)


_PAGES = {shape: _page(*shape) for shape in itertools.product((False, True), repeat=2)}
"""One statement per shape of the page query: with or without an organization, a cursor."""
