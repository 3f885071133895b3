"""Organizations and their memberships: who belongs to which organization, with which role.

Membership is what every visibility rule joins through: `membership_of` is the EXISTS the
statements of spaces and todos put in their WHERE, so a row the caller may not see is simply
not found, in one round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Exists,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
    exists,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import InstrumentedAttribute, Mapped, aliased, mapped_column
from sqlalchemy.sql.elements import BindParameter

from app.db.executor import Executor, Row, Statement
from app.models.base import BaseDAO, Role
from app.models.parameters import string_parameter, uuid_parameter
from app.models.users import UserDAO


class OrganizationRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class OrganizationWithRole:
    id: uuid.UUID
    name: str
    created_at: datetime
    role: Role

    @classmethod
    def from_row(cls, row: Row) -> OrganizationWithRole:
        return cls(id=row.id, name=row.name, created_at=row.created_at, role=Role(row.role))


@dataclass(frozen=True)
class NewMember:
    organization_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class MemberAddRefusal:
    """Why adding a member did nothing: looked up only after the one-statement attempt failed."""

    caller_role: Role | None
    user_exists: bool
    already_member: bool


class OrganizationDAO(BaseDAO):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)

    @classmethod
    async def create_owned(
        cls, executor: Executor, name: str, owner_id: uuid.UUID
    ) -> OrganizationRow | None:
        """Create an organization with `owner_id` as its owner; None when the name is taken.
        Two statements: run it in a transaction."""
        organization = await executor.one_or_none(_CREATE, {"new_name": name})
        if organization is not None:
            await MembershipDAO.add(executor, organization.id, owner_id, Role.OWNER)
        return organization

    @classmethod
    async def get_by_name(cls, executor: Executor, name: str) -> OrganizationRow | None:
        return await executor.one_or_none(_BY_NAME, {"organization_name": name})

    @classmethod
    async def get_visible(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> OrganizationWithRole | None:
        """The organization with the caller's role in it; None unless the caller is a member."""
        params = {"organization_id": organization_id, "caller_id": user_id}
        row = await executor.one_or_none(_VISIBLE, params)
        return OrganizationWithRole.from_row(row) if row is not None else None

    @classmethod
    async def list_with_roles(
        cls, executor: Executor, user_id: uuid.UUID
    ) -> list[OrganizationWithRole]:
        """The organizations `user_id` belongs to, with the role held in each, oldest first."""
        rows = await executor.rows(_WITH_ROLES, {"caller_id": user_id})
        return [OrganizationWithRole.from_row(row) for row in rows]


class MembershipDAO(BaseDAO):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id"),
        CheckConstraint("role IN ('owner', 'member')", name="role"),
        Index(None, "user_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)

    @classmethod
    async def add(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
    ) -> bool:
        """Add a member; False when `user_id` already belongs to the organization."""
        params = {"organization_id": organization_id, "member_id": user_id, "new_role": role.value}
        return await executor.one_or_none(_ADD, params) is not None

    @classmethod
    async def add_by_owner(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        owner_id: uuid.UUID,
        user_name: str,
        role: Role,
    ) -> NewMember | None:
        """Add the user called `user_name`, in one statement that also checks that `owner_id`
        owns the organization. None when nothing was added (see `explain_refused_add`)."""
        params = {
            "organization_id": organization_id,
            "caller_id": owner_id,
            "user_name": user_name,
            "new_role": role.value,
        }
        row = await executor.one_or_none(_ADD_BY_OWNER, params)
        if row is None:
            return None
        return NewMember(organization_id, row.user_id, user_name, Role(row.role), row.created_at)

    @classmethod
    async def explain_refused_add(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        caller_id: uuid.UUID,
        user_name: str,
    ) -> MemberAddRefusal:
        params = {
            "organization_id": organization_id,
            "caller_id": caller_id,
            "user_name": user_name,
        }
        row = await executor.one(_EXPLAIN_REFUSED_ADD, params)
        return MemberAddRefusal(
            caller_role=Role(row.caller_role) if row.caller_role is not None else None,
            user_exists=bool(row.user_exists),
            already_member=bool(row.already_member),
        )

    @classmethod
    async def role_of(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        params = {"organization_id": organization_id, "member_id": user_id}
        row = await executor.one_or_none(_ROLE_OF, params)
        return Role(row.role) if row is not None else None


def membership_of(
    user_id: BindParameter[uuid.UUID],
    organization_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
) -> Exists:
    """EXISTS: `user_id` belongs to the organization (a column, so it correlates)."""
    return exists().where(
        MembershipDAO.organization_id == organization_id, MembershipDAO.user_id == user_id
    )


_ORGANIZATION = uuid_parameter("organization_id")
_CALLER = uuid_parameter("caller_id")
_MEMBER = uuid_parameter("member_id")
_NEW_ROLE = string_parameter("new_role")

_CREATE = Statement(
    insert(OrganizationDAO)
    .values(name=string_parameter("new_name"))
    .on_conflict_do_nothing(index_elements=[OrganizationDAO.name])
    .returning(*OrganizationDAO.__table__.c)
)
_BY_NAME = Statement(
    select(*OrganizationDAO.__table__.c).where(
        OrganizationDAO.name == string_parameter("organization_name")
    )
)
_WITH_ROLES_SELECT = select(
    OrganizationDAO.id, OrganizationDAO.name, OrganizationDAO.created_at, MembershipDAO.role
).join(
    MembershipDAO,
    and_(MembershipDAO.organization_id == OrganizationDAO.id, MembershipDAO.user_id == _CALLER),
)
_VISIBLE = Statement(_WITH_ROLES_SELECT.where(OrganizationDAO.id == _ORGANIZATION))
_WITH_ROLES = Statement(_WITH_ROLES_SELECT.order_by(OrganizationDAO.created_at, OrganizationDAO.id))

_ADD = Statement(
    insert(MembershipDAO)
    .values(organization_id=_ORGANIZATION, user_id=_MEMBER, role=_NEW_ROLE)
    .on_conflict_do_nothing(index_elements=[MembershipDAO.organization_id, MembershipDAO.user_id])
    .returning(MembershipDAO.id)
)

_caller = aliased(MembershipDAO)
_ADD_BY_OWNER = Statement(
    insert(MembershipDAO)
    .from_select(
        ["organization_id", "user_id", "role"],
        select(_ORGANIZATION, UserDAO.id, _NEW_ROLE).where(
            UserDAO.name == string_parameter("user_name"),
            exists().where(
                _caller.organization_id == _ORGANIZATION,
                _caller.user_id == _CALLER,
                _caller.role == Role.OWNER.value,
            ),
        ),
    )
    .on_conflict_do_nothing(index_elements=[MembershipDAO.organization_id, MembershipDAO.user_id])
    .returning(MembershipDAO.user_id, MembershipDAO.role, MembershipDAO.created_at)
)

_target = select(UserDAO.id).where(UserDAO.name == string_parameter("user_name")).scalar_subquery()
_EXPLAIN_REFUSED_ADD = Statement(
    select(
        select(MembershipDAO.role)
        .where(MembershipDAO.organization_id == _ORGANIZATION, MembershipDAO.user_id == _CALLER)
        .scalar_subquery()
        .label("caller_role"),
        exists().where(UserDAO.name == string_parameter("user_name")).label("user_exists"),
        exists()
        .where(MembershipDAO.organization_id == _ORGANIZATION, MembershipDAO.user_id == _target)
        .label("already_member"),
    )
)
_ROLE_OF = Statement(
    select(MembershipDAO.role).where(
        MembershipDAO.organization_id == _ORGANIZATION, MembershipDAO.user_id == _MEMBER
    )
)
