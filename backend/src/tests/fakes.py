"""In-memory stand-ins for the DAOs and the database, for unit tests without I/O.

Each FakeDAO has the same classmethod signatures as its real twin and keeps rows in a dict on
the class; `reset()` empties them. `FakeDatabase.run` snapshots the store and restores it when
the unit of work raises, so a failed request leaves nothing behind, as a rollback would.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from app.db import Database, DatabaseUnavailable, UnitOfWork
from app.migrate import head_revision
from app.models import Daos, OrganizationWithRole, Role
from app.settings import Settings


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeRow:
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)


@dataclass
class FakeUser(FakeRow):
    name: str = ""
    password_hash: str = ""


@dataclass
class FakeOrganization(FakeRow):
    name: str = ""


@dataclass
class FakeMembership(FakeRow):
    organization_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    role: str = Role.MEMBER.value


@dataclass
class FakeSpace(FakeRow):
    name: str = ""
    organization_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class FakeTodo(FakeRow):
    title: str = ""
    content: str = ""
    done: bool = False
    version: int = 1
    space_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)


class FakeUserDAO:
    rows: ClassVar[dict[uuid.UUID, FakeUser]] = {}

    @classmethod
    async def create(cls, session: Any, name: str, password_hash: str) -> FakeUser | None:
        if any(user.name == name for user in cls.rows.values()):
            return None
        user = FakeUser(name=name, password_hash=password_hash)
        cls.rows[user.id] = user
        return copy.copy(user)

    @classmethod
    async def get_by_name(cls, session: Any, name: str) -> FakeUser | None:
        return next((copy.copy(u) for u in cls.rows.values() if u.name == name), None)

    @classmethod
    async def get(cls, session: Any, user_id: uuid.UUID) -> FakeUser | None:
        user = cls.rows.get(user_id)
        return copy.copy(user) if user else None

    @classmethod
    async def set_password_hash(cls, session: Any, user_id: uuid.UUID, password_hash: str) -> None:
        if user_id in cls.rows:
            cls.rows[user_id].password_hash = password_hash
            cls.rows[user_id].updated_at = _now()

    @classmethod
    async def delete(cls, session: Any, user_id: uuid.UUID) -> bool:
        if cls.rows.pop(user_id, None) is None:
            return False
        for dao in (FakeMembershipDAO, FakeTodoDAO):
            for key in [k for k, row in dao.rows.items() if row.user_id == user_id]:
                del dao.rows[key]
        return True


class FakeOrganizationDAO:
    rows: ClassVar[dict[uuid.UUID, FakeOrganization]] = {}

    @classmethod
    async def create_owned(
        cls, session: Any, name: str, owner_id: uuid.UUID
    ) -> FakeOrganization | None:
        if any(org.name == name for org in cls.rows.values()):
            return None
        organization = FakeOrganization(name=name)
        cls.rows[organization.id] = organization
        await FakeMembershipDAO.add(session, organization.id, owner_id, Role.OWNER)
        return copy.copy(organization)

    @classmethod
    async def get_by_name(cls, session: Any, name: str) -> FakeOrganization | None:
        return next((copy.copy(o) for o in cls.rows.values() if o.name == name), None)

    @classmethod
    async def list_with_roles(
        cls, session: Any, user_id: uuid.UUID
    ) -> Sequence[OrganizationWithRole]:
        memberships = [m for m in FakeMembershipDAO.rows.values() if m.user_id == user_id]
        found = [(cls.rows[m.organization_id], m.role) for m in memberships]
        found.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
        return [OrganizationWithRole(id=o.id, name=o.name, role=Role(role)) for o, role in found]


class FakeMembershipDAO:
    rows: ClassVar[dict[uuid.UUID, FakeMembership]] = {}

    @classmethod
    async def add(
        cls, session: Any, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
    ) -> bool:
        if await cls.role_of(session, organization_id, user_id) is not None:
            return False
        membership = FakeMembership(
            organization_id=organization_id, user_id=user_id, role=role.value
        )
        cls.rows[membership.id] = membership
        return True

    @classmethod
    async def role_of(
        cls, session: Any, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        for m in cls.rows.values():
            if m.organization_id == organization_id and m.user_id == user_id:
                return Role(m.role)
        return None


class FakeSpaceDAO:
    rows: ClassVar[dict[uuid.UUID, FakeSpace]] = {}

    @classmethod
    async def create(cls, session: Any, organization_id: uuid.UUID, name: str) -> FakeSpace:
        space = FakeSpace(name=name, organization_id=organization_id)
        cls.rows[space.id] = space
        return copy.copy(space)

    @classmethod
    async def get_by_name(
        cls, session: Any, organization_id: uuid.UUID, name: str
    ) -> FakeSpace | None:
        matches = [
            s for s in cls.rows.values() if s.organization_id == organization_id and s.name == name
        ]
        matches.sort(key=lambda s: (s.created_at, s.id))
        return copy.copy(matches[0]) if matches else None


class FakeTodoDAO:
    rows: ClassVar[dict[uuid.UUID, FakeTodo]] = {}

    @classmethod
    async def create(
        cls,
        session: Any,
        *,
        space_id: uuid.UUID,
        user_id: uuid.UUID,
        title: str,
        content: str = "",
        done: bool = False,
    ) -> FakeTodo:
        todo = FakeTodo(space_id=space_id, user_id=user_id, title=title, content=content, done=done)
        cls.rows[todo.id] = todo
        return copy.copy(todo)

    @classmethod
    async def count_in_space(cls, session: Any, space_id: uuid.UUID) -> int:
        return sum(1 for t in cls.rows.values() if t.space_id == space_id)


FAKE_DAOS = (FakeUserDAO, FakeOrganizationDAO, FakeMembershipDAO, FakeSpaceDAO, FakeTodoDAO)


def fake_daos() -> Daos:
    """The DAO set for unit tests; typed as the real one, which it mirrors classmethod by
    classmethod."""
    return Daos(
        users=cast(Any, FakeUserDAO),
        organizations=cast(Any, FakeOrganizationDAO),
        memberships=cast(Any, FakeMembershipDAO),
        spaces=cast(Any, FakeSpaceDAO),
        todos=cast(Any, FakeTodoDAO),
    )


def reset() -> None:
    for dao in FAKE_DAOS:
        dao.rows.clear()


class FakeDatabase(Database):
    """A database without I/O: runs units of work against the FakeDAOs' dicts."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.available = True
        self.revision: str | None = head_revision()
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def run(self, work: UnitOfWork[Any]) -> Any:
        if not self.available:
            raise DatabaseUnavailable("fake database switched off")
        snapshot = {dao: copy.deepcopy(dao.rows) for dao in FAKE_DAOS}
        try:
            return await work(cast(Any, object()))
        except BaseException:
            for dao, rows in snapshot.items():
                dao.rows.clear()
                dao.rows.update(rows)
            raise

    async def schema_revision(self) -> str | None:
        if not self.available:
            raise DatabaseUnavailable("fake database switched off")
        return self.revision
