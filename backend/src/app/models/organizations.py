"""Organizations and their memberships: who belongs to which organization, with which role.

Membership is what every visibility rule joins through: `membership_of` is the EXISTS the
statements of spaces and todos put in their WHERE, so a row the caller may not see is simply
not found, in one round trip. It also asks that the organization is not deleted: deleting one
only marks it (`deleted_at`), which hides it and everything in it at once, and its rows are
then removed in bounded batches (`app.deletions`).

An organization always keeps an owner. The statements that demote or remove a member say so
in their WHERE, and a change of members first writes the organization's row
(`lock_for_member_change`), so two owners demoting each other at once are serialised on it:
the second sees the first's change and is refused, at any isolation level.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeAlias

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    DateTime,
    Exists,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import InstrumentedAttribute, Mapped, aliased, mapped_column
from sqlalchemy.sql.elements import BindParameter

from app.db.executor import Executor, Row, Statement
from app.models.base import BaseDAO, Role
from app.models.changes import WritePosition, change_position_column, recorded
from app.models.parameters import (
    after_cursor_oldest_first,
    integer_parameter,
    keyset_arguments,
    string_parameter,
    uuid_parameter,
)
from app.models.users import UserDAO
from app.pagination import Keyset


class OrganizationRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class MemberRow(Protocol):
    """A member of an organization, keyed for pages by when they joined."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def user_name(self) -> str: ...
    @property
    def role(self) -> str: ...


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
    __table_args__ = (Index(None, "deleted_at"),)

    name: Mapped[str | None] = mapped_column(String(100), nullable=True, unique=True)
    """NULL once deleted, so the name can be used again at once."""
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    change_position: Mapped[Decimal] = change_position_column()
    """The position of the latest write (app.models.changes)."""

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

    @classmethod
    async def rename(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> OrganizationWithRole | None:
        """Rename it if the caller owns it; None otherwise (`MembershipDAO.role_of` says
        why). A name another organization holds raises `DuplicateValue`."""
        params = {"organization_id": organization_id, "caller_id": user_id, "new_name": name}
        row = await executor.one_or_none(_RENAME, params)
        return OrganizationWithRole.from_row(row) if row is not None else None

    @classmethod
    async def mark_deleted(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID | None
    ) -> bool:
        """Delete the organization as far as anyone can see, if `user_id` owns it (None: for
        an account's deletion, which has checked that itself). Its rows go later, in batches."""
        params = {"organization_id": organization_id, "caller_id": user_id}
        statement = _MARK_DELETED if user_id is not None else _MARK_DELETED_UNCHECKED
        return await executor.one_or_none(statement, params) is not None

    @classmethod
    async def lock_for_member_change(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        """Write the organization's row, so that changes of its members (and the last-owner
        rule they obey) happen one after another; the caller's role, None for outsiders."""
        params = {"organization_id": organization_id, "caller_id": user_id}
        if await executor.one_or_none(_LOCK, params) is None:
            return None
        return await MembershipDAO.role_of(executor, organization_id, user_id)

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        """Organizations deleted whose rows are not all removed yet, oldest first."""
        return [row.id for row in await executor.rows(_DELETED, {"batch": limit})]

    @classmethod
    async def ids_after(
        cls, executor: Executor, after: uuid.UUID | None, limit: int
    ) -> list[uuid.UUID]:
        """Organization ids in order, a page at a time: upkeep visits each in turn."""
        params = {"after_id": after or uuid.UUID(int=0), "batch": limit}
        return [row.id for row in await executor.rows(_IDS_AFTER, params)]

    @classmethod
    async def purge(cls, executor: Executor, organization_id: uuid.UUID) -> bool:
        """Remove a deleted organization's own row, once its spaces and members are gone."""
        params = {"organization_id": organization_id}
        return await executor.one_or_none(_PURGE, params) is not None


class MembershipDAO(BaseDAO):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id"),
        CheckConstraint("role IN ('owner', 'member')", name="role"),
        Index(None, "user_id"),
        Index(None, "organization_id", "created_at", "id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    change_position: Mapped[Decimal] = change_position_column()
    """The position of the latest write (app.models.changes)."""

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
        """The user's role in the organization; None if not a member (or it is deleted)."""
        params = {"organization_id": organization_id, "member_id": user_id}
        row = await executor.one_or_none(_ROLE_OF, params)
        return Role(row.role) if row is not None else None

    @classmethod
    async def page_visible(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        after: Keyset | None,
        fetch: int,
    ) -> list[MemberRow]:
        """Up to `fetch` members in the order they joined, after the cursor; nothing unless
        the caller is a member."""
        params: dict[str, object] = {
            "organization_id": organization_id,
            "caller_id": user_id,
            "fetch": fetch,
        }
        params.update(keyset_arguments(after))
        return list(await executor.rows(_MEMBER_PAGES[after is not None], params))

    @classmethod
    async def change_role(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID, role: Role
    ) -> MemberRow | None:
        """Give the member `role`, unless that would leave the organization without an
        owner; None when nothing changed (not a member, or its last owner). Run it after
        `OrganizationDAO.lock_for_member_change`, in the same transaction."""
        params = {"organization_id": organization_id, "member_id": member_id}
        if await executor.one_or_none(_CHANGE_ROLE, {**params, "new_role": role.value}) is None:
            return None
        return await executor.one(_MEMBER, params)

    @classmethod
    async def remove(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID
    ) -> bool:
        """Remove the member unless they are its last owner; run after
        `OrganizationDAO.lock_for_member_change`, in the same transaction."""
        params = {"organization_id": organization_id, "member_id": member_id}
        return await executor.one_or_none(_REMOVE, params) is not None

    @classmethod
    async def is_last_owner(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID
    ) -> bool:
        """Whether `member_id` is the organization's only owner."""
        params = {"organization_id": organization_id, "member_id": member_id}
        return await executor.one_or_none(_LAST_OWNER, params) is not None

    @classmethod
    async def held_alone(cls, executor: Executor, user_id: uuid.UUID) -> list[OrganizationRow]:
        """The organizations where `user_id` is the only owner and others are members: an
        account cannot be deleted before it hands them over. Writes each of them (see
        `lock_for_member_change`), so this holds until the transaction ends."""
        await executor.rows(_LOCK_OWNED, {"member_id": user_id})
        return list(await executor.rows(_HELD_ALONE, {"member_id": user_id}))

    @classmethod
    async def sole_memberships(cls, executor: Executor, user_id: uuid.UUID) -> list[uuid.UUID]:
        """The organizations `user_id` is the only member of: they go with the account."""
        return [row.id for row in await executor.rows(_SOLE, {"member_id": user_id})]

    @classmethod
    async def remove_all_of(cls, executor: Executor, user_id: uuid.UUID) -> int:
        """Remove every membership of `user_id` (one per organization they belong to)."""
        return len(await executor.rows(_REMOVE_ALL_OF, {"member_id": user_id}))

    @classmethod
    async def purge_batch(cls, executor: Executor, organization_id: uuid.UUID, batch: int) -> int:
        """Remove up to `batch` memberships of a deleted organization; how many went."""
        params = {"organization_id": organization_id, "batch": batch}
        return len(await executor.rows(_PURGE_BATCH, params))


OrganizationKey: TypeAlias = (
    ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID] | BindParameter[uuid.UUID]
)
"""An organization's id in a statement: a column (which correlates) or a parameter."""


def organization_is_live(organization_id: OrganizationKey) -> Exists:
    """EXISTS: the organization is there and not deleted."""
    live = aliased(OrganizationDAO)
    return exists().where(live.id == organization_id, live.deleted_at.is_(None))


def membership_of(
    user_id: BindParameter[uuid.UUID],
    organization_id: OrganizationKey,
    *,
    role: Role | None = None,
) -> Exists:
    """EXISTS: `user_id` belongs to the organization (a column, so it correlates), which is not
    deleted; with `role`, holds that role in it. One subquery joining the two tables rather
    than two: every subquery is planned again wherever PostgreSQL plans per execution."""
    member, live = aliased(MembershipDAO), aliased(OrganizationDAO)
    conditions = [member.organization_id == organization_id, member.user_id == user_id]
    if role is not None:
        conditions.append(member.role == role.value)
    return (
        select(literal_column("1"))
        .select_from(member)
        .join(live, live.id == member.organization_id)
        .where(*conditions, live.deleted_at.is_(None))
        .exists()
    )


_ORGANIZATION = uuid_parameter("organization_id")
_CALLER = uuid_parameter("caller_id")
_MEMBER_ID = uuid_parameter("member_id")
_NEW_ROLE = string_parameter("new_role")
_BATCH = integer_parameter("batch")
_LIVE = OrganizationDAO.deleted_at.is_(None)

_ORGANIZATION_COLUMNS = (OrganizationDAO.id, OrganizationDAO.name, OrganizationDAO.created_at)
_CREATE = Statement(
    recorded(
        insert(OrganizationDAO)
        .values(name=string_parameter("new_name"), change_position=WritePosition())
        .on_conflict_do_nothing(index_elements=[OrganizationDAO.name])
        .returning(*_ORGANIZATION_COLUMNS, OrganizationDAO.id.label("organization_id")),
        kind="organization",
        deleted=False,
        returning=["id", "name", "created_at"],
    )
)
_BY_NAME = Statement(
    select(*_ORGANIZATION_COLUMNS).where(
        OrganizationDAO.name == string_parameter("organization_name"), _LIVE
    )
)
_WITH_ROLES_SELECT = (
    select(OrganizationDAO.id, OrganizationDAO.name, OrganizationDAO.created_at, MembershipDAO.role)
    .join(
        MembershipDAO,
        and_(MembershipDAO.organization_id == OrganizationDAO.id, MembershipDAO.user_id == _CALLER),
    )
    .where(_LIVE)
)
_VISIBLE = Statement(_WITH_ROLES_SELECT.where(OrganizationDAO.id == _ORGANIZATION))
_WITH_ROLES = Statement(_WITH_ROLES_SELECT.order_by(OrganizationDAO.created_at, OrganizationDAO.id))
_owned_by_caller = membership_of(_CALLER, OrganizationDAO.id, role=Role.OWNER)
_RENAME = Statement(
    recorded(
        update(OrganizationDAO)
        .where(OrganizationDAO.id == _ORGANIZATION, _LIVE, _owned_by_caller)
        .values(
            name=string_parameter("new_name"),
            updated_at=func.now(),
            change_position=WritePosition(),
        )
        .returning(
            *_ORGANIZATION_COLUMNS,
            literal(Role.OWNER.value).label("role"),
            OrganizationDAO.id.label("organization_id"),
        ),
        kind="organization",
        deleted=False,
        returning=["id", "name", "created_at", "role"],
    )
)
_mark_deleted = (
    update(OrganizationDAO)
    .where(OrganizationDAO.id == _ORGANIZATION, _LIVE)
    .values(
        name=None, deleted_at=func.now(), updated_at=func.now(), change_position=WritePosition()
    )
    .returning(OrganizationDAO.id)
)
_MARK_DELETED = Statement(_mark_deleted.where(_owned_by_caller))
_MARK_DELETED_UNCHECKED = Statement(_mark_deleted)
_IDS_AFTER = Statement(
    select(OrganizationDAO.id)
    .where(OrganizationDAO.id > uuid_parameter("after_id"))
    .order_by(OrganizationDAO.id)
    .limit(_BATCH)
)
_LOCK = Statement(
    update(OrganizationDAO)
    .where(OrganizationDAO.id == _ORGANIZATION, _LIVE, membership_of(_CALLER, OrganizationDAO.id))
    .values(updated_at=func.now())
    .returning(OrganizationDAO.id)
)
_DELETED = Statement(
    select(OrganizationDAO.id)
    .where(OrganizationDAO.deleted_at.is_not(None))
    .order_by(OrganizationDAO.deleted_at)
    .limit(_BATCH)
)
_PURGE = Statement(
    delete(OrganizationDAO)
    .where(OrganizationDAO.id == _ORGANIZATION, OrganizationDAO.deleted_at.is_not(None))
    .returning(OrganizationDAO.id)
)

_ADD = Statement(
    recorded(
        insert(MembershipDAO)
        .values(
            organization_id=_ORGANIZATION,
            user_id=_MEMBER_ID,
            role=_NEW_ROLE,
            change_position=WritePosition(),
        )
        .on_conflict_do_nothing(
            index_elements=[MembershipDAO.organization_id, MembershipDAO.user_id]
        )
        .returning(MembershipDAO.id, MembershipDAO.organization_id, MembershipDAO.user_id),
        kind="member",
        object_id="user_id",
        deleted=False,
        returning=["id"],
    )
)
_ADD_BY_OWNER = Statement(
    recorded(
        insert(MembershipDAO)
        .from_select(
            ["organization_id", "user_id", "role", "change_position"],
            select(_ORGANIZATION, UserDAO.id, _NEW_ROLE, WritePosition()).where(
                UserDAO.name == string_parameter("user_name"),
                membership_of(_CALLER, _ORGANIZATION, role=Role.OWNER),
            ),
        )
        .on_conflict_do_nothing(
            index_elements=[MembershipDAO.organization_id, MembershipDAO.user_id]
        )
        .returning(
            MembershipDAO.user_id,
            MembershipDAO.role,
            MembershipDAO.created_at,
            MembershipDAO.organization_id,
        ),
        kind="member",
        object_id="user_id",
        deleted=False,
        returning=["user_id", "role", "created_at"],
    )
)

_target = select(UserDAO.id).where(UserDAO.name == string_parameter("user_name")).scalar_subquery()
_EXPLAIN_REFUSED_ADD = Statement(
    select(
        select(MembershipDAO.role)
        .where(
            MembershipDAO.organization_id == _ORGANIZATION,
            MembershipDAO.user_id == _CALLER,
            organization_is_live(_ORGANIZATION),
        )
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
        MembershipDAO.organization_id == _ORGANIZATION,
        MembershipDAO.user_id == _MEMBER_ID,
        organization_is_live(_ORGANIZATION),
    )
)

_MEMBER_COLUMNS = (
    MembershipDAO.id,
    MembershipDAO.created_at,
    MembershipDAO.user_id,
    UserDAO.name.label("user_name"),
    MembershipDAO.role,
)
_members = (
    select(*_MEMBER_COLUMNS)
    .join(UserDAO, UserDAO.id == MembershipDAO.user_id)
    .where(MembershipDAO.organization_id == _ORGANIZATION)
)
_MEMBER = Statement(_members.where(MembershipDAO.user_id == _MEMBER_ID))


def _member_page(after: bool) -> Statement:
    stmt = (
        _members.where(membership_of(_CALLER, _ORGANIZATION))
        .order_by(MembershipDAO.created_at, MembershipDAO.id)
        .limit(integer_parameter("fetch"))
    )
    if after:
        stmt = stmt.where(after_cursor_oldest_first(MembershipDAO.created_at, MembershipDAO.id))
    return Statement(stmt)


_MEMBER_PAGES = {after: _member_page(after) for after in (False, True)}


def _another_owner() -> Exists:
    """EXISTS: the organization has an owner besides the member being changed."""
    other = aliased(MembershipDAO)
    return exists().where(
        other.organization_id == _ORGANIZATION,
        other.user_id != _MEMBER_ID,
        other.role == Role.OWNER.value,
    )


_the_member = and_(
    MembershipDAO.organization_id == _ORGANIZATION, MembershipDAO.user_id == _MEMBER_ID
)
_keeps_an_owner = or_(MembershipDAO.role != Role.OWNER.value, _another_owner())
_CHANGE_ROLE = Statement(
    recorded(
        update(MembershipDAO)
        .where(_the_member, or_(literal(Role.OWNER.value) == _NEW_ROLE, _keeps_an_owner))
        .values(role=_NEW_ROLE, updated_at=func.now(), change_position=WritePosition())
        .returning(MembershipDAO.id, MembershipDAO.organization_id, MembershipDAO.user_id),
        kind="member",
        object_id="user_id",
        deleted=False,
        returning=["id"],
    )
)
_LAST_OWNER = Statement(
    select(MembershipDAO.id).where(
        _the_member, MembershipDAO.role == Role.OWNER.value, ~_another_owner()
    )
)
_REMOVE = Statement(
    recorded(
        delete(MembershipDAO)
        .where(_the_member, _keeps_an_owner)
        .returning(MembershipDAO.id, MembershipDAO.organization_id, MembershipDAO.user_id),
        kind="member",
        object_id="user_id",
        deleted=True,
        returning=["id"],
    )
)

_owner = aliased(MembershipDAO)
_owned_by_member = select(_owner.organization_id).where(
    _owner.user_id == _MEMBER_ID, _owner.role == Role.OWNER.value
)
_LOCK_OWNED = Statement(
    update(OrganizationDAO)
    .where(OrganizationDAO.id.in_(_owned_by_member), _LIVE)
    .values(updated_at=func.now())
    .returning(OrganizationDAO.id)
)
_others = aliased(MembershipDAO)
_HELD_ALONE = Statement(
    select(*_ORGANIZATION_COLUMNS)
    .where(
        OrganizationDAO.id.in_(_owned_by_member),
        _LIVE,
        ~exists().where(
            _others.organization_id == OrganizationDAO.id,
            _others.user_id != _MEMBER_ID,
            _others.role == Role.OWNER.value,
        ),
        exists().where(
            _others.organization_id == OrganizationDAO.id, _others.user_id != _MEMBER_ID
        ),
    )
    .order_by(OrganizationDAO.name)
)
_SOLE = Statement(
    select(OrganizationDAO.id).where(
        OrganizationDAO.id.in_(
            select(MembershipDAO.organization_id).where(MembershipDAO.user_id == _MEMBER_ID)
        ),
        _LIVE,
        ~exists().where(
            _others.organization_id == OrganizationDAO.id, _others.user_id != _MEMBER_ID
        ),
    )
)
_REMOVE_ALL_OF = Statement(
    recorded(
        delete(MembershipDAO)
        .where(MembershipDAO.user_id == _MEMBER_ID)
        .returning(MembershipDAO.id, MembershipDAO.organization_id, MembershipDAO.user_id),
        kind="member",
        object_id="user_id",
        deleted=True,
        returning=["id"],
    )
)
_PURGE_BATCH = Statement(
    delete(MembershipDAO)
    .where(
        MembershipDAO.id.in_(
            select(MembershipDAO.id)
            .where(MembershipDAO.organization_id == _ORGANIZATION)
            .limit(_BATCH)
        )
    )
    .returning(MembershipDAO.id)
)
