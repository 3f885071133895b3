"""Spaces: the containers of todos inside an organization, visible to its members."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import ForeignKey, Index, String, and_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.organizations import MembershipDAO, membership_of
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
    __table_args__ = (Index(None, "organization_id", "created_at", "id"),)

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )

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


_SPACES = SpaceDAO.__table__.c
_ORGANIZATION = uuid_parameter("organization_id")
_CALLER = uuid_parameter("caller_id")

_CREATE = Statement(
    insert(SpaceDAO)
    .values(organization_id=_ORGANIZATION, name=string_parameter("new_name"))
    .returning(*_SPACES)
)
_CREATE_VISIBLE = Statement(
    insert(SpaceDAO)
    .from_select(
        ["organization_id", "name"],
        select(_ORGANIZATION, string_parameter("new_name")).where(
            membership_of(_CALLER, _ORGANIZATION)
        ),
    )
    .returning(*_SPACES)
)
_VISIBLE = Statement(
    select(*_SPACES).where(
        SpaceDAO.id == uuid_parameter("space_id"), membership_of(_CALLER, SpaceDAO.organization_id)
    )
)
_BY_NAME = Statement(
    select(*_SPACES)
    .where(
        SpaceDAO.organization_id == _ORGANIZATION, SpaceDAO.name == string_parameter("space_name")
    )
    .order_by(SpaceDAO.created_at, SpaceDAO.id)
    .limit(1)
)


def _page(by_organization: bool, after: bool) -> Statement:
    stmt = (
        select(*_SPACES)
        .join(
            MembershipDAO,
            and_(
                MembershipDAO.organization_id == SpaceDAO.organization_id,
                MembershipDAO.user_id == _CALLER,
            ),
        )
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
