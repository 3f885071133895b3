"""Tables and every SQL statement of the service, as classmethods of DAO classes.

Each classmethod takes the session first, does one job and never commits: the transaction
boundary belongs to `Database.run`. Visibility is part of the statements (joins through
memberships), so a row the caller may not see is simply not found, in one round trip.
The same statements run on CockroachDB and PostgreSQL: keys come from `gen_random_uuid()`,
conflicts are handled with `ON CONFLICT`, and nothing relies on sequences or advisory locks.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can drop and alter them by name."""


class Role(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class BaseDAO(DeclarativeBase):
    """Columns every table has: a database-generated UUID key and creation/update times."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class UserDAO(BaseDAO):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)

    @classmethod
    async def create(cls, session: AsyncSession, name: str, password_hash: str) -> UserDAO | None:
        """Insert a user; None when the name is taken (no exception, no second statement)."""
        stmt = (
            insert(cls)
            .values(name=name, password_hash=password_hash)
            .on_conflict_do_nothing(index_elements=[cls.name])
            .returning(cls)
        )
        return (await session.execute(stmt)).scalar_one_or_none()

    @classmethod
    async def get_by_name(cls, session: AsyncSession, name: str) -> UserDAO | None:
        return (await session.execute(select(cls).where(cls.name == name))).scalar_one_or_none()

    @classmethod
    async def get(cls, session: AsyncSession, user_id: uuid.UUID) -> UserDAO | None:
        return (await session.execute(select(cls).where(cls.id == user_id))).scalar_one_or_none()

    @classmethod
    async def set_password_hash(
        cls, session: AsyncSession, user_id: uuid.UUID, password_hash: str
    ) -> None:
        """Store a re-hashed password (argon2 parameters changed since it was set)."""
        await session.execute(
            update(cls).where(cls.id == user_id).values(password_hash=password_hash)
        )

    @classmethod
    async def delete(cls, session: AsyncSession, user_id: uuid.UUID) -> bool:
        """Delete a user and, by cascade, their memberships and todos; False if absent."""
        result = await session.execute(delete(cls).where(cls.id == user_id).returning(cls.id))
        return result.scalar_one_or_none() is not None


class OrganizationDAO(BaseDAO):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)

    @classmethod
    async def create_owned(
        cls, session: AsyncSession, name: str, owner_id: uuid.UUID
    ) -> OrganizationDAO | None:
        """Create an organization with `owner_id` as its owner; None when the name is taken."""
        stmt = (
            insert(cls)
            .values(name=name)
            .on_conflict_do_nothing(index_elements=[cls.name])
            .returning(cls)
        )
        organization = (await session.execute(stmt)).scalar_one_or_none()
        if organization is not None:
            await MembershipDAO.add(session, organization.id, owner_id, Role.OWNER)
        return organization

    @classmethod
    async def get_by_name(cls, session: AsyncSession, name: str) -> OrganizationDAO | None:
        return (await session.execute(select(cls).where(cls.name == name))).scalar_one_or_none()

    @classmethod
    async def list_with_roles(
        cls, session: AsyncSession, user_id: uuid.UUID
    ) -> Sequence[OrganizationWithRole]:
        """The organizations `user_id` belongs to, with the role held in each, oldest first."""
        stmt = (
            select(cls.id, cls.name, MembershipDAO.role)
            .join(MembershipDAO, MembershipDAO.organization_id == cls.id)
            .where(MembershipDAO.user_id == user_id)
            .order_by(cls.created_at, cls.id)
        )
        rows = (await session.execute(stmt)).all()
        return [OrganizationWithRole(id=row.id, name=row.name, role=Role(row.role)) for row in rows]


@dataclass(frozen=True)
class OrganizationWithRole:
    id: uuid.UUID
    name: str
    role: Role


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
        cls, session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
    ) -> bool:
        """Add a member; False when `user_id` already belongs to the organization."""
        stmt = (
            insert(cls)
            .values(organization_id=organization_id, user_id=user_id, role=role.value)
            .on_conflict_do_nothing(index_elements=[cls.organization_id, cls.user_id])
            .returning(cls.id)
        )
        return (await session.execute(stmt)).scalar_one_or_none() is not None

    @classmethod
    async def role_of(
        cls, session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        stmt = select(cls.role).where(
            cls.organization_id == organization_id, cls.user_id == user_id
        )
        role = (await session.execute(stmt)).scalar_one_or_none()
        return Role(role) if role is not None else None


class SpaceDAO(BaseDAO):
    __tablename__ = "spaces"
    __table_args__ = (Index(None, "organization_id", "created_at", "id"),)

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )

    @classmethod
    async def create(cls, session: AsyncSession, organization_id: uuid.UUID, name: str) -> SpaceDAO:
        stmt = insert(cls).values(organization_id=organization_id, name=name).returning(cls)
        return (await session.execute(stmt)).scalar_one()

    @classmethod
    async def get_by_name(
        cls, session: AsyncSession, organization_id: uuid.UUID, name: str
    ) -> SpaceDAO | None:
        """The oldest space of that name in the organization (names are not unique)."""
        stmt = (
            select(cls)
            .where(cls.organization_id == organization_id, cls.name == name)
            .order_by(cls.created_at, cls.id)
            .limit(1)
        )
        return (await session.execute(stmt)).scalar_one_or_none()


class TodoDAO(BaseDAO):
    __tablename__ = "todos"
    __table_args__ = (
        # Newest-first pages of one space, optionally filtered by `done`: keyset scans read
        # these backwards (both PostgreSQL and CockroachDB scan an index in either direction).
        Index(None, "space_id", "created_at", "id"),
        Index(None, "space_id", "done", "created_at", "id"),
        Index(None, "user_id"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    title: Mapped[str] = mapped_column(String(200), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    done: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    space_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )

    @classmethod
    async def create(
        cls,
        session: AsyncSession,
        *,
        space_id: uuid.UUID,
        user_id: uuid.UUID,
        title: str,
        content: str = "",
        done: bool = False,
    ) -> TodoDAO:
        stmt = (
            insert(cls)
            .values(space_id=space_id, user_id=user_id, title=title, content=content, done=done)
            .returning(cls)
        )
        return (await session.execute(stmt)).scalar_one()

    @classmethod
    async def count_in_space(cls, session: AsyncSession, space_id: uuid.UUID) -> int:
        stmt = select(func.count()).select_from(cls).where(cls.space_id == space_id)
        return (await session.execute(stmt)).scalar_one()


class SchemaDAO:
    """Statements about the schema itself rather than any table of the app."""

    VERSION_TABLE: ClassVar[str] = "alembic_version"

    @classmethod
    async def current_revision(cls, session: AsyncSession) -> str | None:
        """The Alembic revision the database is at, or None before the first migration."""
        exists = await session.execute(
            text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = :table"
            ),
            {"table": cls.VERSION_TABLE},
        )
        if not exists.scalar_one():
            return None
        stmt = text(f"SELECT version_num FROM {cls.VERSION_TABLE}")  # noqa: S608 - constant
        return (await session.execute(stmt)).scalar_one_or_none()

    @classmethod
    async def truncate_app_tables(cls, session: AsyncSession) -> None:
        """Empty every table of the app (not the migration state): test isolation only."""
        tables = ", ".join(table.name for table in BaseDAO.metadata.sorted_tables)
        await session.execute(text(f"TRUNCATE {tables} CASCADE"))


@dataclass(frozen=True)
class Daos:
    """The DAO set the app uses; tests pass in-memory fakes with the same classmethods."""

    users: type[UserDAO]
    organizations: type[OrganizationDAO]
    memberships: type[MembershipDAO]
    spaces: type[SpaceDAO]
    todos: type[TodoDAO]

    @classmethod
    def real(cls) -> Daos:
        return cls(
            users=UserDAO,
            organizations=OrganizationDAO,
            memberships=MembershipDAO,
            spaces=SpaceDAO,
            todos=TodoDAO,
        )
