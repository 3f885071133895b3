"""In-memory stand-ins for the DAOs and the database, for unit tests without I/O.

Each FakeDAO has the same classmethod signatures as its real twin and keeps rows in a dict on
the class; `reset()` empties them. `FakeDatabase.run` snapshots the store and restores it when
the unit of work raises, so a failed request leaves nothing behind, as a rollback would.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from app.db.database import Database, Work
from app.db.executor import Executor, Row
from app.db.failures import UNIQUE_VIOLATION, DatabaseUnavailable, DuplicateValue
from app.db.migrate import head_revision
from app.models import (
    Daos,
    IdempotencyKeyDAO,
    LoginAttemptDAO,
    MembershipDAO,
    OrganizationDAO,
    RevokedTokenDAO,
    Role,
    SchemaDAO,
    SpaceDAO,
    TodoDAO,
    UserDAO,
)
from app.models.changes import ChangeDAO, Cursor, Kind, Window
from app.models.feed import FeedDAO
from app.models.idempotency_keys import IdempotencyKeyRow
from app.models.login_attempts import (
    LOGIN_CHECK_TIMEOUT,
    LoginAttempt,
    LoginLimits,
    LoginRefused,
    login_retry_after,
)
from app.models.organizations import (
    MemberAddRefusal,
    MemberRow,
    NewMember,
    OrganizationRow,
    OrganizationWithRole,
)
from app.models.sessions import RETIRED_GENERATION_KEPT, Caller, generation_key
from app.models.spaces import SpaceRow
from app.models.todos import TodoAccess, TodoRow
from app.models.users import UserRow
from app.pagination import Keyset
from app.settings import Settings


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeRow:
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)

    def _asdict(self) -> dict[str, Any]:
        """As the driver's rows answer it: every column by name."""
        return dataclasses.asdict(self)


RowT = TypeVar("RowT", bound=FakeRow)
T = TypeVar("T")


@dataclass
class FakeUser(FakeRow):
    name: str = ""
    """"" once deleted: the real column is NULL then, which no lookup by name matches."""
    password_hash: str = ""
    token_generation: int = 0
    deleted_at: datetime | None = None


@dataclass
class FakeOrganization(FakeRow):
    name: str = ""
    """"" once deleted, as FakeUser's."""
    deleted_at: datetime | None = None
    change_position: Decimal = Decimal(0)


@dataclass
class FakeMembership(FakeRow):
    organization_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    role: str = Role.MEMBER.value
    change_position: Decimal = Decimal(0)


@dataclass
class FakeSpace(FakeRow):
    name: str = ""
    organization_id: uuid.UUID = field(default_factory=uuid.uuid4)
    deleted_at: datetime | None = None
    change_position: Decimal = Decimal(0)

    def _asdict(self) -> dict[str, Any]:
        """As the statements return a space: without `deleted_at` and the log's stamp."""
        fields = dataclasses.asdict(self)
        del fields["deleted_at"], fields["change_position"]
        return fields


@dataclass
class FakeMember:
    """A member as `MembershipDAO.page_visible` answers it."""

    id: uuid.UUID
    created_at: datetime
    user_id: uuid.UUID
    user_name: str
    role: str


@dataclass
class FakeRevokedToken(FakeRow):
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    expires_at: datetime = field(default_factory=_now)


@dataclass
class FakeTodo(FakeRow):
    title: str = ""
    content: str = ""
    done: bool = False
    version: int = 1
    space_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: uuid.UUID | None = field(default_factory=uuid.uuid4)
    change_position: Decimal = Decimal(0)

    def _asdict(self) -> dict[str, Any]:
        """As the statements return a todo: without the log's stamp."""
        fields = dataclasses.asdict(self)
        del fields["change_position"]
        return fields


class FakeUserDAO:
    rows: ClassVar[dict[uuid.UUID, FakeUser]] = {}

    @classmethod
    async def create(cls, executor: Executor, name: str, password_hash: str) -> UserRow | None:
        if any(user.name == name for user in cls.rows.values()):
            return None
        user = FakeUser(name=name, password_hash=password_hash)
        cls.rows[user.id] = user
        return copy.copy(user)

    @classmethod
    async def get_by_name(cls, executor: Executor, name: str) -> UserRow | None:
        return next((copy.copy(u) for u in cls.rows.values() if u.name == name and name), None)

    @classmethod
    async def get(cls, executor: Executor, user_id: uuid.UUID) -> UserRow | None:
        user = cls.rows.get(user_id)
        return copy.copy(user) if user and user.deleted_at is None else None

    @classmethod
    async def set_password_hash(
        cls, executor: Executor, user_id: uuid.UUID, password_hash: str
    ) -> None:
        if user_id in cls.rows:
            cls.rows[user_id].password_hash = password_hash
            cls.rows[user_id].updated_at = _now()

    @classmethod
    async def change_password(
        cls, executor: Executor, user_id: uuid.UUID, password_hash: str
    ) -> bool:
        user = cls.rows.get(user_id)
        if user is None or user.deleted_at is not None:
            return False
        user.password_hash = password_hash
        return True

    @classmethod
    async def mark_deleted(cls, executor: Executor, user_id: uuid.UUID) -> bool:
        user = cls.rows.get(user_id)
        if user is None or user.deleted_at is not None:
            return False
        user.name, user.deleted_at = "", _now()
        return True

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        marked = [u for u in cls.rows.values() if u.deleted_at is not None]
        return [u.id for u in sorted(marked, key=lambda u: u.deleted_at or _now())][:limit]

    @classmethod
    async def purge(cls, executor: Executor, user_id: uuid.UUID) -> bool:
        user = cls.rows.get(user_id)
        if user is None or user.deleted_at is None:
            return False
        del cls.rows[user_id]
        for todo in FakeTodoDAO.rows.values():
            if todo.user_id == user_id:
                todo.user_id = None
        for store in (FakeMembershipDAO.rows, FakeRevokedTokenDAO.rows):
            for key in [k for k, row in store.items() if row.user_id == user_id]:
                del store[key]
        return True


class FakeRevokedTokenDAO:
    rows: ClassVar[dict[uuid.UUID, FakeRevokedToken]] = {}

    @classmethod
    async def is_valid(cls, executor: Executor, caller: Caller) -> bool:
        return _session_valid(caller)

    @classmethod
    async def revoke(cls, executor: Executor, caller: Caller) -> None:
        if caller.token_id not in cls.rows and caller.user_id in FakeUserDAO.rows:
            cls.rows[caller.token_id] = FakeRevokedToken(
                id=caller.token_id, user_id=caller.user_id, expires_at=caller.expires_at
            )

    @classmethod
    async def end_all(cls, executor: Executor, user_id: uuid.UUID) -> int | None:
        user = FakeUserDAO.rows.get(user_id)
        if user is None or user.deleted_at is not None:
            return None
        retired = generation_key(user_id, user.token_generation)
        cls.rows.setdefault(
            retired,
            FakeRevokedToken(
                id=retired, user_id=user_id, expires_at=_now() + RETIRED_GENERATION_KEPT
            ),
        )
        user.token_generation += 1
        return user.token_generation

    @classmethod
    async def purge_expired(cls, executor: Executor, batch: int = 1000) -> int:
        expired = [k for k, r in cls.rows.items() if r.expires_at < _now()][:batch]
        for key in expired:
            del cls.rows[key]
        return len(expired)


def _session_valid(caller: Caller) -> bool:
    user = FakeUserDAO.rows.get(caller.user_id)
    return (
        user is not None
        and user.deleted_at is None
        and user.token_generation == caller.generation
        and _not_revoked(caller)
    )


def _not_revoked(caller: Caller) -> bool:
    """What the hot statements ask (`token_not_revoked`); they need a membership too."""
    revoked = FakeRevokedTokenDAO.rows
    return caller.token_id not in revoked and caller.generation_key not in revoked


class FakeOrganizationDAO:
    rows: ClassVar[dict[uuid.UUID, FakeOrganization]] = {}

    @classmethod
    async def create_owned(
        cls, executor: Executor, name: str, owner_id: uuid.UUID
    ) -> OrganizationRow | None:
        if any(org.name == name for org in cls.rows.values()):
            return None
        organization = FakeOrganization(name=name)
        cls.rows[organization.id] = organization
        _record("organization", organization.id, organization.id, organization)
        await FakeMembershipDAO.add(executor, organization.id, owner_id, Role.OWNER)
        return copy.copy(organization)

    @classmethod
    async def get_by_name(cls, executor: Executor, name: str) -> OrganizationRow | None:
        return next((copy.copy(o) for o in cls.rows.values() if o.name == name and name), None)

    @classmethod
    async def get_visible(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> OrganizationWithRole | None:
        role = await FakeMembershipDAO.role_of(executor, organization_id, user_id)
        organization = cls.rows.get(organization_id)
        if role is None or organization is None or organization.deleted_at is not None:
            return None
        return OrganizationWithRole(
            id=organization.id,
            name=organization.name,
            created_at=organization.created_at,
            role=role,
        )

    @classmethod
    async def rename(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> OrganizationWithRole | None:
        role = await FakeMembershipDAO.role_of(executor, organization_id, user_id)
        if role is not Role.OWNER:
            return None
        if any(o.name == name and o.id != organization_id for o in cls.rows.values()):
            raise DuplicateValue(UNIQUE_VIOLATION)
        organization = cls.rows[organization_id]
        organization.name, organization.updated_at = name, _now()
        _record("organization", organization_id, organization_id, organization)
        return OrganizationWithRole(organization.id, name, organization.created_at, Role.OWNER)

    @classmethod
    async def mark_deleted(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID | None
    ) -> bool:
        organization = cls.rows.get(organization_id)
        if organization is None or organization.deleted_at is not None:
            return False
        if user_id is not None and (
            await FakeMembershipDAO.role_of(executor, organization_id, user_id) is not Role.OWNER
        ):
            return False
        organization.name, organization.deleted_at = "", _now()
        return True

    @classmethod
    async def lock_for_member_change(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        return await FakeMembershipDAO.role_of(executor, organization_id, user_id)

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        marked = [o for o in cls.rows.values() if o.deleted_at is not None]
        return [o.id for o in sorted(marked, key=lambda o: o.deleted_at or _now())][:limit]

    @classmethod
    async def ids_after(
        cls, executor: Executor, after: uuid.UUID | None, limit: int
    ) -> list[uuid.UUID]:
        return sorted(key for key in cls.rows if after is None or key > after)[:limit]

    @classmethod
    async def purge(cls, executor: Executor, organization_id: uuid.UUID) -> bool:
        organization = cls.rows.get(organization_id)
        if organization is None or organization.deleted_at is None:
            return False
        del cls.rows[organization_id]
        return True

    @classmethod
    async def list_with_roles(
        cls, executor: Executor, user_id: uuid.UUID
    ) -> list[OrganizationWithRole]:
        memberships = [
            m
            for m in FakeMembershipDAO.rows.values()
            if m.user_id == user_id and _is_live(m.organization_id)
        ]
        found = [(cls.rows[m.organization_id], m.role) for m in memberships]
        found.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
        return [
            OrganizationWithRole(id=o.id, name=o.name, created_at=o.created_at, role=Role(role))
            for o, role in found
        ]


class FakeMembershipDAO:
    rows: ClassVar[dict[uuid.UUID, FakeMembership]] = {}

    @classmethod
    async def add(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
    ) -> bool:
        if await cls.role_of(executor, organization_id, user_id) is not None:
            return False
        membership = FakeMembership(
            organization_id=organization_id, user_id=user_id, role=role.value
        )
        cls.rows[membership.id] = membership
        _record("member", organization_id, user_id, membership)
        return True

    @classmethod
    async def add_by_owner(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        owner_id: uuid.UUID,
        user_name: str,
        role: Role,
    ) -> NewMember | None:
        if await cls.role_of(executor, organization_id, owner_id) is not Role.OWNER:
            return None
        user = await FakeUserDAO.get_by_name(executor, user_name)
        if user is None or not await cls.add(executor, organization_id, user.id, role):
            return None
        membership = next(
            m
            for m in cls.rows.values()
            if m.organization_id == organization_id and m.user_id == user.id
        )
        return NewMember(organization_id, user.id, user.name, role, membership.created_at)

    @classmethod
    async def explain_refused_add(
        cls, executor: Executor, organization_id: uuid.UUID, caller_id: uuid.UUID, user_name: str
    ) -> MemberAddRefusal:
        user = await FakeUserDAO.get_by_name(executor, user_name)
        return MemberAddRefusal(
            caller_role=await cls.role_of(executor, organization_id, caller_id),
            user_exists=user is not None,
            already_member=user is not None
            and await cls.role_of(executor, organization_id, user.id) is not None,
        )

    @classmethod
    async def role_of(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        membership = cls._find(organization_id, user_id)
        if membership is None or not _is_live(organization_id):
            return None
        return Role(membership.role)

    @classmethod
    def _find(cls, organization_id: uuid.UUID, user_id: uuid.UUID) -> FakeMembership | None:
        return next(
            (
                m
                for m in cls.rows.values()
                if m.organization_id == organization_id and m.user_id == user_id
            ),
            None,
        )

    @classmethod
    def _member(cls, membership: FakeMembership) -> FakeMember:
        return FakeMember(
            id=membership.id,
            created_at=membership.created_at,
            user_id=membership.user_id,
            user_name=FakeUserDAO.rows[membership.user_id].name,
            role=membership.role,
        )

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
        if await cls.role_of(executor, organization_id, user_id) is None:
            return []
        rows = sorted(
            (m for m in cls.rows.values() if m.organization_id == organization_id),
            key=lambda m: (m.created_at, m.id),
        )
        if after is not None:
            rows = [m for m in rows if (m.created_at, m.id) > (after.created_at, after.id)]
        return [cls._member(m) for m in rows[:fetch]]

    @classmethod
    def _keeps_an_owner(cls, membership: FakeMembership) -> bool:
        return membership.role != Role.OWNER.value or any(
            m.organization_id == membership.organization_id
            and m.user_id != membership.user_id
            and m.role == Role.OWNER.value
            for m in cls.rows.values()
        )

    @classmethod
    async def change_role(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID, role: Role
    ) -> MemberRow | None:
        membership = cls._find(organization_id, member_id)
        if membership is None or (role is not Role.OWNER and not cls._keeps_an_owner(membership)):
            return None
        membership.role, membership.updated_at = role.value, _now()
        _record("member", organization_id, member_id, membership)
        return cls._member(membership)

    @classmethod
    async def remove(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID
    ) -> bool:
        membership = cls._find(organization_id, member_id)
        if membership is None or not cls._keeps_an_owner(membership):
            return False
        del cls.rows[membership.id]
        _record("member", organization_id, member_id, None)
        return True

    @classmethod
    async def is_last_owner(
        cls, executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID
    ) -> bool:
        membership = cls._find(organization_id, member_id)
        return membership is not None and not cls._keeps_an_owner(membership)

    @classmethod
    async def held_alone(cls, executor: Executor, user_id: uuid.UUID) -> list[OrganizationRow]:
        held = []
        for m in cls.rows.values():
            others = [
                o for o in cls.rows.values() if o.organization_id == m.organization_id and o != m
            ]
            if (
                m.user_id == user_id
                and m.role == Role.OWNER.value
                and _is_live(m.organization_id)
                and others
                and all(o.role != Role.OWNER.value for o in others)
            ):
                held.append(copy.copy(FakeOrganizationDAO.rows[m.organization_id]))
        return sorted(held, key=lambda o: o.name)

    @classmethod
    async def sole_memberships(cls, executor: Executor, user_id: uuid.UUID) -> list[uuid.UUID]:
        return [
            m.organization_id
            for m in cls.rows.values()
            if m.user_id == user_id
            and _is_live(m.organization_id)
            and not any(
                o.organization_id == m.organization_id and o.user_id != user_id
                for o in cls.rows.values()
            )
        ]

    @classmethod
    async def remove_all_of(cls, executor: Executor, user_id: uuid.UUID) -> int:
        gone = [k for k, m in cls.rows.items() if m.user_id == user_id]
        for key in gone:
            _record("member", cls.rows.pop(key).organization_id, user_id, None)
        return len(gone)

    @classmethod
    async def purge_batch(cls, executor: Executor, organization_id: uuid.UUID, batch: int) -> int:
        gone = [k for k, m in cls.rows.items() if m.organization_id == organization_id][:batch]
        for key in gone:
            del cls.rows[key]
        return len(gone)


class FakeSpaceDAO:
    rows: ClassVar[dict[uuid.UUID, FakeSpace]] = {}

    @classmethod
    async def create(cls, executor: Executor, organization_id: uuid.UUID, name: str) -> SpaceRow:
        space = FakeSpace(name=name, organization_id=organization_id)
        cls.rows[space.id] = space
        _record("space", organization_id, space.id, space)
        return copy.copy(space)

    @classmethod
    async def create_visible(
        cls, executor: Executor, organization_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        if await FakeMembershipDAO.role_of(executor, organization_id, user_id) is None:
            return None
        return await cls.create(executor, organization_id, name)

    @classmethod
    async def get_visible(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> SpaceRow | None:
        space = cls.rows.get(space_id)
        if space is None or space.deleted_at is not None:
            return None
        if not _is_member(space.organization_id, user_id):
            return None
        return copy.copy(space)

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
        rows = [
            s
            for s in cls.rows.values()
            if s.deleted_at is None
            and _is_member(s.organization_id, user_id)
            and organization_id in (None, s.organization_id)
        ]
        return list[SpaceRow](_page(rows, after, fetch))

    @classmethod
    async def get_by_name(
        cls, executor: Executor, organization_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        matches = [
            s
            for s in cls.rows.values()
            if s.organization_id == organization_id and s.name == name and s.deleted_at is None
        ]
        matches.sort(key=lambda s: (s.created_at, s.id))
        return copy.copy(matches[0]) if matches else None

    @classmethod
    async def rename(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> SpaceRow | None:
        if await cls.role_in(executor, space_id, user_id) is not Role.OWNER:
            return None
        space = cls.rows[space_id]
        space.name, space.updated_at = name, _now()
        _record("space", space.organization_id, space_id, space)
        return copy.copy(space)

    @classmethod
    async def mark_deleted(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> bool:
        if await cls.role_in(executor, space_id, user_id) is not Role.OWNER:
            return False
        space = cls.rows[space_id]
        space.deleted_at = _now()
        _record("space", space.organization_id, space_id, None)
        return True

    @classmethod
    async def role_in(
        cls, executor: Executor, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        space = cls.rows.get(space_id)
        if space is None or space.deleted_at is not None:
            return None
        return await FakeMembershipDAO.role_of(executor, space.organization_id, user_id)

    @classmethod
    async def deleted(cls, executor: Executor, limit: int) -> list[uuid.UUID]:
        marked = [s for s in cls.rows.values() if s.deleted_at is not None]
        return [s.id for s in sorted(marked, key=lambda s: s.deleted_at or _now())][:limit]

    @classmethod
    async def purge_batch(cls, executor: Executor, organization_id: uuid.UUID, batch: int) -> int:
        gone = [k for k, s in cls.rows.items() if s.organization_id == organization_id][:batch]
        for key in gone:
            del cls.rows[key]
        return len(gone)

    @classmethod
    async def purge(cls, executor: Executor, space_id: uuid.UUID) -> bool:
        space = cls.rows.get(space_id)
        if space is None or space.deleted_at is None:
            return False
        del cls.rows[space_id]
        return True


class FakeTodoDAO:
    rows: ClassVar[dict[uuid.UUID, FakeTodo]] = {}

    @classmethod
    async def create(
        cls,
        executor: Executor,
        *,
        space_id: uuid.UUID,
        user_id: uuid.UUID,
        title: str,
        content: str = "",
        done: bool = False,
    ) -> TodoRow:
        todo = FakeTodo(space_id=space_id, user_id=user_id, title=title, content=content, done=done)
        cls.rows[todo.id] = todo
        _record("todo", FakeSpaceDAO.rows[space_id].organization_id, todo.id, todo)
        return copy.copy(todo)

    @classmethod
    async def create_visible(
        cls,
        executor: Executor,
        *,
        space_id: uuid.UUID,
        caller: Caller,
        title: str,
        content: str,
        done: bool,
    ) -> TodoRow | None:
        if not _not_revoked(caller):
            return None
        if await FakeSpaceDAO.get_visible(executor, space_id, caller.user_id) is None:
            return None
        return await cls.create(
            executor,
            space_id=space_id,
            user_id=caller.user_id,
            title=title,
            content=content,
            done=done,
        )

    @classmethod
    async def get_visible(
        cls, executor: Executor, todo_id: uuid.UUID, caller: Caller
    ) -> TodoRow | None:
        if not _not_revoked(caller):
            return None
        return await cls._visible(executor, todo_id, caller.user_id)

    @classmethod
    async def _visible(
        cls, executor: Executor, todo_id: uuid.UUID, user_id: uuid.UUID
    ) -> FakeTodo | None:
        todo = cls.rows.get(todo_id)
        if todo is None or await FakeSpaceDAO.get_visible(executor, todo.space_id, user_id) is None:
            return None
        return copy.copy(todo)

    @classmethod
    async def page_visible(
        cls,
        executor: Executor,
        caller: Caller,
        *,
        space_id: uuid.UUID | None,
        done: bool | None,
        after: Keyset | None,
        fetch: int,
    ) -> list[TodoRow]:
        if not _not_revoked(caller):
            return []
        user_id = caller.user_id
        rows = [
            t
            for t in cls.rows.values()
            if space_id in (None, t.space_id)
            and done in (None, t.done)
            and t.space_id in FakeSpaceDAO.rows
            and FakeSpaceDAO.rows[t.space_id].deleted_at is None
            and _is_member(FakeSpaceDAO.rows[t.space_id].organization_id, user_id)
        ]
        return list[TodoRow](_page(rows, after, fetch))

    @classmethod
    async def access_of(
        cls, executor: Executor, todo_id: uuid.UUID, user_id: uuid.UUID
    ) -> TodoAccess | None:
        todo = await cls._visible(executor, todo_id, user_id)
        if todo is None:
            return None
        organization_id = FakeSpaceDAO.rows[todo.space_id].organization_id
        role = await FakeMembershipDAO.role_of(executor, organization_id, user_id)
        assert role is not None
        return TodoAccess(version=todo.version, author_id=todo.user_id, caller_role=role)

    @classmethod
    async def _changeable(
        cls,
        executor: Executor,
        todo_id: uuid.UUID,
        caller: Caller,
        versions: Collection[int] | None,
    ) -> FakeTodo | None:
        if not _not_revoked(caller):
            return None
        access = await cls.access_of(executor, todo_id, caller.user_id)
        if access is None:
            return None
        if access.author_id != caller.user_id and access.caller_role is not Role.OWNER:
            return None
        if versions is not None and access.version not in versions:
            return None
        return cls.rows[todo_id]

    @classmethod
    async def update_permitted(
        cls,
        executor: Executor,
        todo_id: uuid.UUID,
        caller: Caller,
        changes: Mapping[str, object],
        versions: Collection[int] | None = None,
    ) -> TodoRow | None:
        todo = await cls._changeable(executor, todo_id, caller, versions)
        if todo is None:
            return None
        for name, value in changes.items():
            setattr(todo, name, value)
        todo.version += 1
        todo.updated_at = _now()
        _record("todo", FakeSpaceDAO.rows[todo.space_id].organization_id, todo.id, todo)
        return copy.copy(todo)

    @classmethod
    async def delete_permitted(
        cls,
        executor: Executor,
        todo_id: uuid.UUID,
        caller: Caller,
        versions: Collection[int] | None = None,
    ) -> bool:
        if await cls._changeable(executor, todo_id, caller, versions) is None:
            return False
        todo = cls.rows.pop(todo_id)
        _record("todo", FakeSpaceDAO.rows[todo.space_id].organization_id, todo_id, None)
        return True

    @classmethod
    async def purge_batch_of_space(cls, executor: Executor, space_id: uuid.UUID, batch: int) -> int:
        gone = [k for k, t in cls.rows.items() if t.space_id == space_id][:batch]
        for key in gone:
            del cls.rows[key]
            _record("todo", FakeSpaceDAO.rows[space_id].organization_id, key, None)
        return len(gone)

    @classmethod
    async def purge_batch_of_organization(
        cls, executor: Executor, organization_id: uuid.UUID, batch: int
    ) -> int:
        spaces = {s.id for s in FakeSpaceDAO.rows.values() if s.organization_id == organization_id}
        gone = [k for k, t in cls.rows.items() if t.space_id in spaces][:batch]
        for key in gone:
            del cls.rows[key]
        return len(gone)

    @classmethod
    async def disown_batch(cls, executor: Executor, user_id: uuid.UUID, batch: int) -> int:
        todos = [t for t in cls.rows.values() if t.user_id == user_id][:batch]
        for todo in todos:
            todo.user_id, todo.version, todo.updated_at = None, todo.version + 1, _now()
            _record("todo", FakeSpaceDAO.rows[todo.space_id].organization_id, todo.id, todo)
        return len(todos)

    @classmethod
    async def count_in_space(cls, executor: Executor, space_id: uuid.UUID) -> int:
        return sum(1 for t in cls.rows.values() if t.space_id == space_id)


@dataclass
class FakeIdempotencyKey(FakeRow):
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    key: str = ""
    request_hash: str = ""
    status_code: int | None = None
    response_body: str | None = None
    response_headers: str | None = None
    expires_at: datetime = field(default_factory=_now)


class FakeIdempotencyKeyDAO:
    rows: ClassVar[dict[uuid.UUID, FakeIdempotencyKey]] = {}

    @classmethod
    def _held(cls, user_id: uuid.UUID, key: str) -> FakeIdempotencyKey | None:
        return next((r for r in cls.rows.values() if r.user_id == user_id and r.key == key), None)

    @classmethod
    async def claim(
        cls, executor: Executor, user_id: uuid.UUID, key: str, request_hash: str, ttl: timedelta
    ) -> uuid.UUID | None:
        held = cls._held(user_id, key)
        if held is not None:
            if held.expires_at > _now():
                return None
            del cls.rows[held.id]
        row = FakeIdempotencyKey(
            user_id=user_id, key=key, request_hash=request_hash, expires_at=_now() + ttl
        )
        cls.rows[row.id] = row
        return row.id

    @classmethod
    async def find(cls, executor: Executor, user_id: uuid.UUID, key: str) -> IdempotencyKeyRow:
        held = cls._held(user_id, key)
        assert held is not None
        return copy.copy(held)

    @classmethod
    async def complete(
        cls,
        executor: Executor,
        claim_id: uuid.UUID,
        status_code: int,
        response_body: str,
        response_headers: str,
    ) -> None:
        row = cls.rows[claim_id]
        row.status_code = status_code
        row.response_body = response_body
        row.response_headers = response_headers

    @classmethod
    async def purge_expired(cls, executor: Executor, batch: int = 1000) -> int:
        expired = [k for k, r in cls.rows.items() if r.expires_at <= _now()][:batch]
        for key in expired:
            del cls.rows[key]
        return len(expired)


@dataclass
class FakeLoginAttempt(FakeRow):
    user_name: str = ""
    address: str = ""
    in_progress: bool = True


class FakeLoginAttemptDAO:
    """Tests move `created_at` back in time to let the window pass."""

    rows: ClassVar[dict[uuid.UUID, FakeLoginAttempt]] = {}

    @classmethod
    def _failed(cls, row: FakeLoginAttempt, now: datetime) -> bool:
        return not row.in_progress or row.created_at <= now - LOGIN_CHECK_TIMEOUT

    @classmethod
    def _limit(
        cls, now: datetime, window: timedelta, n: int, concurrent: int, key: str, value: str
    ) -> tuple[datetime | None, datetime | None]:
        """The (N + C)-th newest attempt in the window, and the N-th newest failed one."""
        rows = [r for r in cls.rows.values() if getattr(r, key) == value]
        counted = sorted((r.created_at for r in rows if r.created_at > now - window), reverse=True)
        failed = sorted(
            (r.created_at for r in rows if r.created_at > now - window and cls._failed(r, now)),
            reverse=True,
        )
        return (
            counted[n + concurrent - 1] if len(counted) >= n + concurrent else None,
            failed[n - 1] if len(failed) >= n else None,
        )

    @classmethod
    async def begin(
        cls, executor: Executor, user_name: str, address: str, limits: LoginLimits
    ) -> LoginAttempt | LoginRefused:
        now = _now()
        retry_after = login_retry_after(
            now,
            limits.window,
            cls._limit(
                now,
                limits.window,
                limits.max_per_user,
                limits.max_concurrent_checks,
                "user_name",
                user_name,
            ),
            cls._limit(
                now,
                limits.window,
                limits.max_per_address,
                limits.max_concurrent_checks,
                "address",
                address,
            ),
        )
        if retry_after is not None:
            return LoginRefused(retry_after)
        row = FakeLoginAttempt(user_name=user_name, address=address, created_at=now)
        cls.rows[row.id] = row
        found = await FakeUserDAO.get_by_name(executor, user_name)
        if found is None:
            return LoginAttempt(id=row.id)
        return LoginAttempt(id=row.id, user_id=found.id, password_hash=found.password_hash)

    @classmethod
    async def fail(cls, executor: Executor, attempt_id: uuid.UUID) -> None:
        if attempt_id in cls.rows:
            cls.rows[attempt_id].in_progress = False
            cls.rows[attempt_id].updated_at = _now()

    @classmethod
    async def succeed(cls, executor: Executor, attempt_id: uuid.UUID, user_name: str) -> None:
        now = _now()
        for key in [
            key
            for key, row in cls.rows.items()
            if row.user_name == user_name and (key == attempt_id or cls._failed(row, now))
        ]:
            del cls.rows[key]

    @classmethod
    async def purge_expired(cls, executor: Executor, window: timedelta, batch: int = 1000) -> int:
        expired = [k for k, r in cls.rows.items() if r.created_at <= _now() - window][:batch]
        for key in expired:
            del cls.rows[key]
        return len(expired)


def _is_live(organization_id: uuid.UUID) -> bool:
    organization = FakeOrganizationDAO.rows.get(organization_id)
    return organization is not None and organization.deleted_at is None


def _is_member(organization_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return _is_live(organization_id) and any(
        m.organization_id == organization_id and m.user_id == user_id
        for m in FakeMembershipDAO.rows.values()
    )


def _page(rows: list[RowT], after: Keyset | None, fetch: int) -> list[RowT]:
    """Newest first by (created_at, id), strictly after the cursor, like the SQL keyset."""
    if after is not None:
        rows = [r for r in rows if (r.created_at, r.id) < (after.created_at, after.id)]
    rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return [copy.copy(r) for r in rows[:fetch]]


class FakeSchemaDAO:
    revision: ClassVar[str | None] = None
    """What `current_revision` answers: the migrations' head unless a test says otherwise."""

    @classmethod
    async def current_revision(cls, executor: Executor) -> str | None:
        return cls.revision


@dataclass(frozen=True)
class FakeEntry:
    position: Decimal
    kind: str
    object_id: uuid.UUID
    deleted: bool


def _record(kind: str, organization_id: uuid.UUID, object_id: uuid.UUID, row: Any) -> None:
    """What the real statements do beside each write: stamp the row, append to the log (a
    delete when `row` is None). Fake transactions never overlap, so a counter is exact."""
    FakeChangeDAO.last_position += 1
    position = Decimal(FakeChangeDAO.last_position)
    if row is not None:
        row.change_position = position
    key = (organization_id, position, kind, object_id)
    FakeChangeDAO.rows[key] = FakeEntry(position, kind, object_id, row is None)  # type: ignore[index]


class FakeChangeDAO:
    rows: ClassVar[dict[uuid.UUID, FakeEntry]] = {}
    """Keyed (organization, position, kind, object id) as the table is; typed as the others
    for FakeDatabase's rollback."""
    last_position: ClassVar[int] = 0
    oldest: ClassVar[Decimal | None] = None
    """What `oldest_allowed` answers: set by a test to make tokens too old."""

    @classmethod
    async def horizon(cls, executor: Executor) -> Decimal:
        return Decimal(cls.last_position + 1)

    @classmethod
    async def window(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        after: Cursor,
        limit: int,
        retention: timedelta,
    ) -> Window:
        horizon = await cls.horizon(executor)
        keys = sorted(
            key
            for key in cls.rows
            if key[0] == organization_id  # type: ignore[index]
            and key[1:] > (after.position, after.kind, after.object_id)  # type: ignore[index]
        )
        entries = [cls.rows[key] for key in keys]
        return Window(entries[:limit], horizon, len(entries) > limit, cls.oldest)

    @classmethod
    async def oldest_allowed(cls, executor: Executor, retention: timedelta) -> Decimal | None:
        return cls.oldest

    @classmethod
    async def take_horizon(cls, executor: Executor) -> None:
        return None  # the fakes keep no time: a test sets `oldest` instead

    @classmethod
    async def forget_horizons(cls, executor: Executor, retention: timedelta) -> int:
        return 0

    @classmethod
    async def purge_old_batch(
        cls, executor: Executor, organization_id: uuid.UUID, retention: timedelta, batch: int
    ) -> int:
        oldest = cls.oldest
        return cls._purge(batch, lambda k: k[0] == organization_id and oldest and k[1] < oldest)

    @classmethod
    async def purge_organization_batch(
        cls, executor: Executor, organization_id: uuid.UUID, batch: int
    ) -> int:
        return cls._purge(batch, lambda key: key[0] == organization_id)

    @classmethod
    def _purge(cls, batch: int, matches: Any) -> int:
        gone = sorted(key for key in cls.rows if matches(key))[:batch]
        for key in gone:
            del cls.rows[key]
        return len(gone)


class FakeFeedDAO:
    @classmethod
    async def current(
        cls,
        executor: Executor,
        kind: Kind,
        organization_id: uuid.UUID,
        caller_id: uuid.UUID,
        object_ids: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, Row]:
        objects = _feed_objects(kind, organization_id, caller_id)
        return {key: row for key, row in objects.items() if key in set(object_ids)}

    @classmethod
    async def snapshot_page(
        cls,
        executor: Executor,
        kind: Kind,
        organization_id: uuid.UUID,
        caller_id: uuid.UUID,
        *,
        below: Decimal,
        after: tuple[Any, ...] | None,
        fetch: int,
    ) -> list[Row]:
        rows = [
            row
            for row in _feed_objects(kind, organization_id, caller_id).values()
            if row.change_position < below
        ]
        rows.sort(key=_snapshot_cursor)
        if after is not None:
            rows = [row for row in rows if _snapshot_cursor(row) > after]
        return rows[:fetch]


def _snapshot_cursor(row: Any) -> tuple[Any, ...]:
    width = sum(1 for name in vars(row) if name.startswith("cursor_"))
    return tuple(getattr(row, f"cursor_{index}") for index in range(width))


def _feed_objects(
    kind: str, organization_id: uuid.UUID, caller_id: uuid.UUID
) -> dict[uuid.UUID, Any]:
    """The visible objects of one kind as FeedDAO's statements return them."""
    if not _is_live(organization_id):
        return {}
    found: dict[uuid.UUID, Any] = {}
    if kind == "organization":
        membership = FakeMembershipDAO._find(organization_id, caller_id)
        organization = FakeOrganizationDAO.rows[organization_id]
        if membership is not None:
            found[organization_id] = SimpleNamespace(
                object_id=organization_id,
                change_position=organization.change_position,
                id=organization_id,
                name=organization.name,
                created_at=organization.created_at,
                role=membership.role,
                cursor_0=organization_id,
            )
    elif kind == "member":
        for m in FakeMembershipDAO.rows.values():
            if m.organization_id == organization_id:
                found[m.user_id] = SimpleNamespace(
                    object_id=m.user_id,
                    change_position=m.change_position,
                    organization_id=organization_id,
                    user_id=m.user_id,
                    user_name=FakeUserDAO.rows[m.user_id].name,
                    role=m.role,
                    created_at=m.created_at,
                    cursor_0=m.user_id,
                )
    elif kind == "space":
        for space in FakeSpaceDAO.rows.values():
            if space.organization_id == organization_id and space.deleted_at is None:
                found[space.id] = SimpleNamespace(
                    object_id=space.id,
                    change_position=space.change_position,
                    cursor_0=space.id,
                    **space._asdict(),
                )
    else:
        for todo in FakeTodoDAO.rows.values():
            holder = FakeSpaceDAO.rows.get(todo.space_id)
            if holder and holder.organization_id == organization_id and not holder.deleted_at:
                found[todo.id] = SimpleNamespace(
                    object_id=todo.id,
                    change_position=todo.change_position,
                    cursor_0=todo.space_id,
                    cursor_1=todo.created_at,
                    cursor_2=todo.id,
                    **todo._asdict(),
                )
    return found


FAKE_DAOS = (
    FakeUserDAO,
    FakeOrganizationDAO,
    FakeMembershipDAO,
    FakeSpaceDAO,
    FakeTodoDAO,
    FakeIdempotencyKeyDAO,
    FakeLoginAttemptDAO,
    FakeRevokedTokenDAO,
    FakeChangeDAO,
)


def fake_daos() -> Daos:
    """The DAO set for unit tests. Typed as the real one, which each fake mirrors classmethod
    by classmethod: tests/unit/test_fakes.py proves the signatures equal."""
    return Daos(
        users=cast(type[UserDAO], FakeUserDAO),
        organizations=cast(type[OrganizationDAO], FakeOrganizationDAO),
        memberships=cast(type[MembershipDAO], FakeMembershipDAO),
        spaces=cast(type[SpaceDAO], FakeSpaceDAO),
        todos=cast(type[TodoDAO], FakeTodoDAO),
        idempotency_keys=cast(type[IdempotencyKeyDAO], FakeIdempotencyKeyDAO),
        login_attempts=cast(type[LoginAttemptDAO], FakeLoginAttemptDAO),
        sessions=cast(type[RevokedTokenDAO], FakeRevokedTokenDAO),
        schema=cast(type[SchemaDAO], FakeSchemaDAO),
        changes=cast(type[ChangeDAO], FakeChangeDAO),
        feed=cast(type[FeedDAO], FakeFeedDAO),
    )


def reset() -> None:
    for dao in FAKE_DAOS:
        dao.rows.clear()
    FakeSchemaDAO.revision = head_revision()
    FakeChangeDAO.last_position = 0
    FakeChangeDAO.oldest = None


FAKE_EXECUTOR = Executor(connection=None, dialect=PGDialect_asyncpg())  # type: ignore[no-untyped-call]
"""What the fakes are handed: typed as the real one, with no connection behind it."""


class FakeDatabase(Database):
    """A database without I/O: runs units of work against the FakeDAOs' dicts."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.available = True
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def run(self, work: Work[T], *, single_statement: bool = False) -> T:
        if not self.available:
            raise DatabaseUnavailable("fake database switched off")
        snapshot = {dao: copy.deepcopy(dao.rows) for dao in FAKE_DAOS}
        try:
            return await work(FAKE_EXECUTOR)
        except BaseException:
            for dao, rows in snapshot.items():
                store: dict[uuid.UUID, Any] = dao.rows
                store.clear()
                store.update(rows)
            raise
