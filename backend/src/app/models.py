"""Tables and every SQL statement of the service, as classmethods of DAO classes.

Each classmethod takes the session first, does one job and never commits: the transaction
boundary belongs to `Database.run`. Visibility is part of the statements (joins through
memberships), so a row the caller may not see is simply not found, in one round trip.
The same statements run on CockroachDB and PostgreSQL: keys come from `gen_random_uuid()`,
conflicts are handled with `ON CONFLICT`, and nothing relies on sequences or advisory locks.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeAlias, cast

from sqlalchemy import (
    BindParameter,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    Executable,
    Exists,
    ForeignKey,
    Index,
    Integer,
    Interval,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    UnaryExpression,
    UniqueConstraint,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Mapped, aliased, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.driver import DriverConnection
from app.pagination import Keyset

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
    async def exists(cls, session: Executor, user_id: uuid.UUID) -> bool:
        """Whether the user is still there. Asked only after a request found nothing, to
        tell a deleted user's unexpired token (401) from a plain miss (404), so the
        requests that find something never pay for it."""
        return await _one_or_none(session, _USER_EXISTS, {"user_id": user_id}) is not None

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
    async def get_visible(
        cls, session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> OrganizationWithRole | None:
        """The organization with the caller's role in it; None unless the caller is a member."""
        stmt = cls._with_roles(user_id).where(cls.id == organization_id)
        row = (await session.execute(stmt)).one_or_none()
        return OrganizationWithRole.from_row(row) if row is not None else None

    @classmethod
    async def list_with_roles(
        cls, session: AsyncSession, user_id: uuid.UUID
    ) -> Sequence[OrganizationWithRole]:
        """The organizations `user_id` belongs to, with the role held in each, oldest first."""
        stmt = cls._with_roles(user_id).order_by(cls.created_at, cls.id)
        return [OrganizationWithRole.from_row(row) for row in await session.execute(stmt)]

    @classmethod
    def _with_roles(cls, user_id: uuid.UUID) -> Select[tuple[uuid.UUID, str, datetime, str]]:
        return select(cls.id, cls.name, cls.created_at, MembershipDAO.role).join(
            MembershipDAO,
            and_(MembershipDAO.organization_id == cls.id, MembershipDAO.user_id == user_id),
        )


@dataclass(frozen=True)
class OrganizationWithRole:
    id: uuid.UUID
    name: str
    created_at: datetime
    role: Role

    @classmethod
    def from_row(cls, row: Row[tuple[uuid.UUID, str, datetime, str]]) -> OrganizationWithRole:
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
    async def add_by_owner(
        cls,
        session: AsyncSession,
        organization_id: uuid.UUID,
        owner_id: uuid.UUID,
        user_name: str,
        role: Role,
    ) -> NewMember | None:
        """Add the user called `user_name`, in one statement that also checks that `owner_id`
        owns the organization. None when nothing was added (see `explain_refused_add`)."""
        caller = aliased(cls)
        chosen = select(
            literal(organization_id, UUID(as_uuid=True)),
            UserDAO.id,
            literal(role.value, String),
        ).where(
            UserDAO.name == user_name,
            exists().where(
                caller.organization_id == organization_id,
                caller.user_id == owner_id,
                caller.role == Role.OWNER.value,
            ),
        )
        stmt = (
            insert(cls)
            .from_select(["organization_id", "user_id", "role"], chosen)
            .on_conflict_do_nothing(index_elements=[cls.organization_id, cls.user_id])
            .returning(cls.user_id, cls.role, cls.created_at)
        )
        row = (await session.execute(stmt)).one_or_none()
        if row is None:
            return None
        return NewMember(organization_id, row.user_id, user_name, Role(row.role), row.created_at)

    @classmethod
    async def explain_refused_add(
        cls,
        session: AsyncSession,
        organization_id: uuid.UUID,
        caller_id: uuid.UUID,
        user_name: str,
    ) -> MemberAddRefusal:
        target = select(UserDAO.id).where(UserDAO.name == user_name).scalar_subquery()
        stmt = select(
            select(cls.role)
            .where(cls.organization_id == organization_id, cls.user_id == caller_id)
            .scalar_subquery(),
            exists().where(UserDAO.name == user_name),
            exists().where(cls.organization_id == organization_id, cls.user_id == target),
        )
        caller_role, user_exists, already_member = (await session.execute(stmt)).one()
        return MemberAddRefusal(
            caller_role=Role(caller_role) if caller_role is not None else None,
            user_exists=bool(user_exists),
            already_member=bool(already_member),
        )

    @classmethod
    async def role_of(
        cls, session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Role | None:
        stmt = select(cls.role).where(
            cls.organization_id == organization_id, cls.user_id == user_id
        )
        role = (await session.execute(stmt)).scalar_one_or_none()
        return Role(role) if role is not None else None


def _membership_of(
    user_id: uuid.UUID | BindParameter[uuid.UUID],
    organization_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
) -> Exists:
    """EXISTS: `user_id` belongs to the organization (a column, so it correlates)."""
    return exists().where(
        MembershipDAO.organization_id == organization_id, MembershipDAO.user_id == user_id
    )


Column: TypeAlias = ColumnElement[Any] | InstrumentedAttribute[Any]


def _newest_first(
    created_at: Column, row_id: Column
) -> tuple[UnaryExpression[Any], UnaryExpression[Any]]:
    """The keyset order of every page: newest first, ties broken by id."""
    return created_at.desc(), row_id.desc()


def _after(
    created_at: Column, row_id: Column, cursor_created_at: Column, cursor_id: Column
) -> ColumnElement[bool]:
    """Rows strictly older than the cursor in (created_at, id) order: an index range scan."""
    return tuple_(created_at, row_id) < tuple_(cursor_created_at, cursor_id)


def _after_keyset(created_at: Column, row_id: Column, keyset: Keyset) -> ColumnElement[bool]:
    return _after(
        created_at,
        row_id,
        literal(keyset.created_at, DateTime(timezone=True)),
        literal(keyset.id, UUID(as_uuid=True)),
    )


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
    async def create_visible(
        cls, session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, name: str
    ) -> SpaceDAO | None:
        """Create a space if `user_id` is a member of the organization; None otherwise."""
        organization = literal(organization_id, UUID(as_uuid=True))
        chosen = select(organization, literal(name, String)).where(
            _membership_of(user_id, organization)
        )
        stmt = insert(cls).from_select(["organization_id", "name"], chosen).returning(cls)
        return (await session.execute(stmt)).scalar_one_or_none()

    @classmethod
    async def get_visible(
        cls, session: AsyncSession, space_id: uuid.UUID, user_id: uuid.UUID
    ) -> SpaceDAO | None:
        stmt = select(cls).where(cls.id == space_id, _membership_of(user_id, cls.organization_id))
        return (await session.execute(stmt)).scalar_one_or_none()

    @classmethod
    async def page_visible(
        cls,
        session: AsyncSession,
        user_id: uuid.UUID,
        *,
        organization_id: uuid.UUID | None,
        after: Keyset | None,
        fetch: int,
    ) -> list[SpaceDAO]:
        """Up to `fetch` spaces the caller can see, newest first, after the cursor."""
        stmt = (
            select(cls)
            .join(
                MembershipDAO,
                and_(
                    MembershipDAO.organization_id == cls.organization_id,
                    MembershipDAO.user_id == user_id,
                ),
            )
            .order_by(*_newest_first(cls.created_at, cls.id))
            .limit(fetch)
        )
        if organization_id is not None:
            stmt = stmt.where(cls.organization_id == organization_id)
        if after is not None:
            stmt = stmt.where(_after_keyset(cls.created_at, cls.id, after))
        return list((await session.execute(stmt)).scalars())

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


@dataclass(frozen=True)
class TodoAccess:
    """What decides whether the caller may change a todo; read only when a change failed."""

    version: int
    author_id: uuid.UUID
    caller_role: Role


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
        """Insert without a visibility check: for seeding, where the author is known."""
        stmt = (
            insert(cls)
            .values(space_id=space_id, user_id=user_id, title=title, content=content, done=done)
            .returning(cls)
        )
        return (await session.execute(stmt)).scalar_one()

    # The hot paths below run statements built once per shape, with bind parameters, and
    # read plain rows instead of ORM objects: each is compiled once per dialect, and runs on
    # a session or straight on the driver (`Database.run_prepared`, see app.driver). Parameter
    # names never equal a column name: in an INSERT or UPDATE those are reserved for values.

    @classmethod
    async def create_visible(
        cls,
        session: Executor,
        *,
        space_id: uuid.UUID,
        user_id: uuid.UUID,
        title: str,
        content: str,
        done: bool,
    ) -> TodoRow | None:
        """Insert a todo if the caller belongs to the space's organization; None otherwise."""
        params = {
            "in_space_id": space_id,
            "caller_id": user_id,
            "new_title": title,
            "new_content": content,
            "new_done": done,
        }
        return await _one_or_none(session, _todo_statements.create(), params)

    @classmethod
    async def get_visible(
        cls, session: Executor, todo_id: uuid.UUID, user_id: uuid.UUID
    ) -> TodoRow | None:
        params = {"todo_id": todo_id, "caller_id": user_id}
        return await _one_or_none(session, _todo_statements.get(), params)

    @classmethod
    async def page_visible(
        cls,
        session: Executor,
        user_id: uuid.UUID,
        *,
        space_id: uuid.UUID | None,
        done: bool | None,
        after: Keyset | None,
        fetch: int,
    ) -> list[TodoRow]:
        """Up to `fetch` todos the caller can see, newest first, after the cursor.

        For each visible space (one, with `space_id`) a LATERAL subquery reads at most `fetch`
        rows from that space's index, starting at the cursor; the outer query merges them.
        The cost depends on the page size and the number of spaces, never on the table size.
        """
        stmt = _todo_statements.page(space_id is not None, done is not None, after is not None)
        params: dict[str, object] = {"caller_id": user_id, "fetch": fetch}
        if space_id is not None:
            params["in_space_id"] = space_id
        if done is not None:
            params["with_done"] = done
        if after is not None:
            params["after_created_at"] = after.created_at
            params["after_id"] = after.id
        return list(await _rows(session, stmt, params))

    @classmethod
    async def update_permitted(
        cls,
        session: Executor,
        todo_id: uuid.UUID,
        user_id: uuid.UUID,
        changes: Mapping[str, object],
        versions: Collection[int] | None = None,
    ) -> TodoRow | None:
        """Apply `changes` and bump the version atomically, in one statement that also checks
        the caller's right and the expected versions. None when nothing matched (see
        `access_of` for why)."""
        stmt = _todo_statements.update(tuple(sorted(changes)), versions is not None)
        params: dict[str, object] = {"todo_id": todo_id, "caller_id": user_id}
        params.update({f"new_{name}": value for name, value in changes.items()})
        if versions is not None:
            params["versions"] = list(versions)
        return await _one_or_none(session, stmt, params)

    @classmethod
    def _changeable_by(cls, user_id: uuid.UUID | BindParameter[uuid.UUID]) -> Exists:
        """EXISTS: the caller is the author or an owner, and a member of the organization."""
        return exists().where(
            SpaceDAO.id == cls.space_id,
            MembershipDAO.organization_id == SpaceDAO.organization_id,
            MembershipDAO.user_id == user_id,
            or_(cls.user_id == user_id, MembershipDAO.role == Role.OWNER.value),
        )

    @classmethod
    async def delete_permitted(
        cls,
        session: Executor,
        todo_id: uuid.UUID,
        user_id: uuid.UUID,
        versions: Collection[int] | None = None,
    ) -> bool:
        params: dict[str, object] = {"todo_id": todo_id, "caller_id": user_id}
        if versions is not None:
            params["versions"] = list(versions)
        stmt = _todo_statements.delete(versions is not None)
        return await _one_or_none(session, stmt, params) is not None

    @classmethod
    async def access_of(
        cls, session: Executor, todo_id: uuid.UUID, user_id: uuid.UUID
    ) -> TodoAccess | None:
        """The todo's version and author and the caller's role; None if the caller can't see it."""
        params = {"todo_id": todo_id, "caller_id": user_id}
        row = await _one_or_none(session, _todo_statements.access(), params)
        if row is None:
            return None
        return TodoAccess(version=row.version, author_id=row.user_id, caller_role=Role(row.role))

    @classmethod
    async def count_in_space(cls, session: AsyncSession, space_id: uuid.UUID) -> int:
        stmt = select(func.count()).select_from(cls).where(cls.space_id == space_id)
        return (await session.execute(stmt)).scalar_one()


class TodoRow(Protocol):
    """A todo as a plain row, from a session (SQLAlchemy's Row) or the driver (DriverRow)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def space_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def title(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def version(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...

    def _asdict(self) -> dict[str, Any]: ...


Executor: TypeAlias = AsyncSession | DriverConnection
"""What the hot statements run on: a session's transaction, or a driver connection."""


async def _rows(session: Executor, stmt: Executable, params: Mapping[str, object]) -> Sequence[Any]:
    """Run one of the prebuilt hot statements as SQL compiled once per dialect: per request,
    SQLAlchemy neither walks the statement for its cache key nor goes through the ORM layer,
    which has nothing to add to plain rows. The driver prepares the SQL once per connection
    and reuses it. Rows answer `row.name` and `row._asdict()` on either path.
    """
    if isinstance(session, DriverConnection):
        sql, names, defaults = _compiled(session.dialect, stmt)
        return await session.fetch(sql, _arguments(names, defaults, params))
    connection = await session.connection()
    sql, names, defaults = _compiled(connection.dialect, stmt)
    result = await connection.exec_driver_sql(sql, _arguments(names, defaults, params))
    return result.all()


def _arguments(
    names: tuple[str, ...], defaults: Mapping[str, object], params: Mapping[str, object]
) -> tuple[object, ...]:
    return tuple(params[name] if name in params else defaults[name] for name in names)


async def _one_or_none(
    session: Executor, stmt: Executable, params: Mapping[str, object]
) -> Any | None:
    rows = await _rows(session, stmt, params)
    return rows[0] if rows else None


_COMPILED: dict[tuple[str, int], tuple[str, tuple[str, ...], dict[str, object]]] = {}


def _compiled(dialect: Dialect, stmt: Executable) -> tuple[str, tuple[str, ...], dict[str, object]]:
    """SQL text, parameter order and constant parameters of a prebuilt statement.

    Keyed by the statement object's identity: `_TodoStatements` keeps every statement alive
    for the life of the process, so an id is never reused for another one.
    """
    key = (dialect.name, id(stmt))
    if key not in _COMPILED:
        compiled = cast(SQLCompiler, cast(ClauseElement, stmt).compile(dialect=dialect))
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name} does not use positional parameters")
        defaults = {name: value for name, value in compiled.params.items() if value is not None}
        _COMPILED[key] = (compiled.string, tuple(compiled.positiontup), defaults)
    return _COMPILED[key]


class _TodoStatements:
    """TodoDAO's hot statements, built on first use per shape and then reused."""

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], Executable] = {}

    def _cached(self, key: tuple[object, ...], build: Callable[[], Executable]) -> Executable:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @staticmethod
    def _caller() -> BindParameter[uuid.UUID]:
        return bindparam("caller_id", type_=UUID(as_uuid=True))

    def create(self) -> Executable:
        def build() -> Executable:
            chosen = select(
                SpaceDAO.id,
                self._caller(),
                bindparam("new_title", type_=String),
                bindparam("new_content", type_=Text),
                bindparam("new_done", type_=Boolean),
            ).where(
                SpaceDAO.id == bindparam("in_space_id", type_=UUID(as_uuid=True)),
                _membership_of(self._caller(), SpaceDAO.organization_id),
            )
            return (
                insert(TODOS)
                .from_select(["space_id", "user_id", "title", "content", "done"], chosen)
                .returning(*TODOS.c)
            )

        return self._cached(("create",), build)

    def get(self) -> Executable:
        def build() -> Executable:
            return (
                select(*TODOS.c)
                .join(SpaceDAO, SpaceDAO.id == TODOS.c.space_id)
                .where(
                    TODOS.c.id == bindparam("todo_id", type_=UUID(as_uuid=True)),
                    _membership_of(self._caller(), SpaceDAO.organization_id),
                )
            )

        return self._cached(("get",), build)

    def page(self, by_space: bool, by_done: bool, after: bool) -> Executable:
        def build() -> Executable:
            spaces = select(SpaceDAO.id).where(
                _membership_of(self._caller(), SpaceDAO.organization_id)
            )
            if by_space:
                spaces = spaces.where(
                    SpaceDAO.id == bindparam("in_space_id", type_=UUID(as_uuid=True))
                )
            visible = spaces.subquery("visible_spaces")
            page = select(*TODOS.c).where(TODOS.c.space_id == visible.c.id)
            if by_done:
                page = page.where(TODOS.c.done == bindparam("with_done", type_=Boolean))
            if after:
                page = page.where(
                    _after(
                        TODOS.c.created_at,
                        TODOS.c.id,
                        bindparam("after_created_at", type_=DateTime(timezone=True)),
                        bindparam("after_id", type_=UUID(as_uuid=True)),
                    )
                )
            fetch = bindparam("fetch", type_=Integer)
            lateral_page = (
                page.order_by(*_newest_first(TODOS.c.created_at, TODOS.c.id))
                .limit(fetch)
                .lateral("page")
            )
            return (
                select(*lateral_page.c)
                .select_from(visible)
                .join(lateral_page, true())
                .order_by(*_newest_first(lateral_page.c.created_at, lateral_page.c.id))
                .limit(fetch)
            )

        return self._cached(("page", by_space, by_done, after), build)

    def update(self, fields: tuple[str, ...], by_version: bool) -> Executable:
        def build() -> Executable:
            values: dict[str, object] = {
                name: bindparam(f"new_{name}", type_=TODOS.c[name].type) for name in fields
            }
            stmt = (
                update(TODOS)
                .where(
                    TODOS.c.id == bindparam("todo_id", type_=UUID(as_uuid=True)),
                    TodoDAO._changeable_by(self._caller()),
                )
                .values(**values, version=TODOS.c.version + 1, updated_at=func.now())
                .returning(*TODOS.c)
            )
            if by_version:
                stmt = stmt.where(self._version_in())
            return stmt

        return self._cached(("update", fields, by_version), build)

    def delete(self, by_version: bool) -> Executable:
        def build() -> Executable:
            stmt = (
                delete(TODOS)
                .where(
                    TODOS.c.id == bindparam("todo_id", type_=UUID(as_uuid=True)),
                    TodoDAO._changeable_by(self._caller()),
                )
                .returning(TODOS.c.id)
            )
            if by_version:
                stmt = stmt.where(self._version_in())
            return stmt

        return self._cached(("delete", by_version), build)

    def access(self) -> Executable:
        def build() -> Executable:
            return (
                select(TODOS.c.version, TODOS.c.user_id, MembershipDAO.role)
                .join(SpaceDAO, SpaceDAO.id == TODOS.c.space_id)
                .join(
                    MembershipDAO,
                    and_(
                        MembershipDAO.organization_id == SpaceDAO.organization_id,
                        MembershipDAO.user_id == self._caller(),
                    ),
                )
                .where(TODOS.c.id == bindparam("todo_id", type_=UUID(as_uuid=True)))
            )

        return self._cached(("access",), build)

    @staticmethod
    def _version_in() -> ColumnElement[bool]:
        """`version = ANY($n)`: one array parameter for any number of If-Match versions, so
        the statement's text, and its prepared form, stay the same whatever the count."""
        return TODOS.c.version == any_(bindparam("versions", type_=ARRAY(Integer)))


_USER_EXISTS = select(UserDAO.id).where(
    UserDAO.id == bindparam("user_id", type_=UUID(as_uuid=True))
)
TODOS = cast(Table, TodoDAO.__table__)
_todo_statements = _TodoStatements()


class IdempotencyKeyDAO(BaseDAO):
    """The first response to a POST carrying `Idempotency-Key`, replayed for retries of it.

    The key row is claimed in the same transaction that creates the resource, so the two
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
        session: AsyncSession,
        user_id: uuid.UUID,
        key: str,
        request_hash: str,
        ttl: timedelta,
    ) -> uuid.UUID | None:
        """Take the key for this request (new, or expired and so free again); None if it is
        held by an earlier request, whose response `find` then returns."""
        new = insert(cls).values(
            user_id=user_id, key=key, request_hash=request_hash, expires_at=func.now() + ttl
        )
        stmt = new.on_conflict_do_update(
            index_elements=[cls.user_id, cls.key],
            set_={
                "request_hash": new.excluded.request_hash,
                "status_code": None,
                "response_body": None,
                "response_headers": None,
                "expires_at": new.excluded.expires_at,
                "created_at": func.now(),
                "updated_at": func.now(),
            },
            where=cls.expires_at <= func.now(),
        ).returning(cls.id)
        return (await session.execute(stmt)).scalar_one_or_none()

    @classmethod
    async def find(cls, session: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyKeyDAO:
        stmt = select(cls).where(cls.user_id == user_id, cls.key == key)
        return (await session.execute(stmt)).scalar_one()

    @classmethod
    async def complete(
        cls,
        session: AsyncSession,
        claim_id: uuid.UUID,
        status_code: int,
        response_body: str,
        response_headers: str,
    ) -> None:
        await session.execute(
            update(cls)
            .where(cls.id == claim_id)
            .values(
                status_code=status_code,
                response_body=response_body,
                response_headers=response_headers,
            )
        )

    @classmethod
    async def purge_expired(cls, session: AsyncSession, batch: int = 1000) -> int:
        """Delete up to `batch` expired keys; returns how many went."""
        expired = select(cls.id).where(cls.expires_at <= func.now()).limit(batch)
        stmt = delete(cls).where(cls.id.in_(expired)).returning(cls.id)
        return len((await session.execute(stmt)).all())


@dataclass(frozen=True)
class LoginLimits:
    """How many failed logins one user name, and one client address, may have in `window`,
    and how many more password checks each may have in progress at once beyond that."""

    max_per_user: int
    max_per_address: int
    window: timedelta
    max_concurrent_checks: int = 0


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt recorded as in progress, with the user whose password to check (id and
    hash None when no user has that name)."""

    id: uuid.UUID
    user_id: uuid.UUID | None = None
    password_hash: str | None = None


@dataclass(frozen=True)
class LoginRefused:
    """A limit is reached: nothing was recorded, and the password must not be checked."""

    retry_after_seconds: int


LOGIN_ADDRESS_LENGTH = 64
"""Room for any IP address; longer peer names (not addresses) are cut to it."""

LOGIN_CHECK_TIMEOUT = timedelta(seconds=60)
"""An attempt still in progress after this long was never settled (its process died while
checking the password): from then on it counts as failed."""

IN_PROGRESS_RETRY_AFTER_SECONDS = 1
"""Retry-After when only attempts still in progress make up a limit: they settle within about
a second, and if they succeed the limit is no longer reached."""


def login_retry_after(
    now: datetime, window: timedelta, *limits: tuple[datetime | None, datetime | None]
) -> int | None:
    """Whole seconds until every limit reached frees up, or None when none is reached.

    Each limit is `(reached_since, failed_since)`: the creation time of its (N + C)-th newest
    attempt in the window, counting attempts in progress, and of its N-th newest failed one
    (None: fewer, not reached). With N failures the limit frees up when the N-th newest
    leaves the window; when attempts in progress make up the count, soon.
    """
    waits: list[float] = []
    for reached_since, failed_since in limits:
        if failed_since is not None:
            waits.append((failed_since + window - now).total_seconds())
        elif reached_since is not None:
            waits.append(IN_PROGRESS_RETRY_AFTER_SECONDS)
    if not waits:
        return None
    return max(1, math.ceil(max(waits)))


class LoginAttemptDAO(BaseDAO):
    """Failed logins, and logins whose password is being checked, per user name and address.

    Shared by every worker and replica through the database. An attempt is recorded, as in
    progress, by the same statement that checks the limits, before its password is checked:
    concurrent requests cannot all pass the check before any failure is counted, so no more
    than N + C attempts for one user name (or one address) are ever failed or in progress
    within the window (exactly so at SERIALIZABLE, the default isolation level), where C
    (`max_concurrent_checks`) lets a client log in over several connections at once. A failed
    check leaves its row as a failure; a successful one deletes it with the name's earlier
    failures. Rows older than the window no longer count and are purged.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        # The N-th newest attempt of a name or an address: a short backwards range scan.
        Index(None, "user_name", "created_at"),
        Index(None, "address", "created_at"),
        Index(None, "created_at"),  # the purge
    )

    user_name: Mapped[str] = mapped_column(String(64), nullable=False)
    address: Mapped[str] = mapped_column(String(LOGIN_ADDRESS_LENGTH), nullable=False)
    in_progress: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")

    @classmethod
    async def begin(
        cls, session: Executor, user_name: str, address: str, limits: LoginLimits
    ) -> LoginAttempt | LoginRefused:
        """Check both limits and, unless one is reached, record the attempt as in progress
        and read the user's password hash: one statement, so one round trip.

        Its reads and its insert are one serializable statement: two concurrent attempts
        that could both exceed a limit conflict, and the loser is re-run (SQLSTATE 40001).
        """
        concurrent = limits.max_concurrent_checks
        parameters = {
            "user_name": user_name,
            "address": address,
            "window": limits.window,
            # The OFFSET of the N-th newest row: N - 1.
            "user_reached": limits.max_per_user + concurrent - 1,
            "user_failed": limits.max_per_user - 1,
            "address_reached": limits.max_per_address + concurrent - 1,
            "address_failed": limits.max_per_address - 1,
        }
        row = (await _rows(session, _LOGIN_STATEMENTS.begin, parameters))[0]
        retry_after = login_retry_after(
            row.checked_at,
            limits.window,
            (row.user_reached_since, row.user_failed_since),
            (row.address_reached_since, row.address_failed_since),
        )
        if retry_after is not None:
            return LoginRefused(retry_after)
        return LoginAttempt(id=row.attempt_id, user_id=row.user_id, password_hash=row.password_hash)

    @classmethod
    async def fail(cls, session: Executor, attempt_id: uuid.UUID) -> None:
        """The password was wrong (or the name unknown): the attempt stays, as a failure."""
        await _rows(session, _LOGIN_STATEMENTS.fail, {"attempt_id": attempt_id})

    @classmethod
    async def succeed(cls, session: Executor, attempt_id: uuid.UUID, user_name: str) -> None:
        """The password was right: forget the attempt and the name's failures, but not other
        attempts for the name still in progress, which may yet fail."""
        parameters = {"attempt_id": attempt_id, "user_name": user_name}
        await _rows(session, _LOGIN_STATEMENTS.succeed, parameters)

    @classmethod
    async def purge_expired(
        cls, session: AsyncSession, window: timedelta, batch: int = 1000
    ) -> int:
        """Delete up to `batch` attempts older than `window`, which no longer count."""
        expired = select(cls.id).where(cls.created_at <= func.now() - window).limit(batch)
        stmt = delete(cls).where(cls.id.in_(expired)).returning(cls.id)
        return len((await session.execute(stmt)).all())


@dataclass(frozen=True)
class _LoginStatements:
    begin: Executable
    fail: Executable
    succeed: Executable


def _login_statements() -> _LoginStatements:
    """LoginAttemptDAO's statements, built once (below), with the limits as parameters:
    SQLAlchemy could not cache the compiled `begin` (its key), and compiling it cost some 4 ms
    of the event loop per login."""
    attempts = LoginAttemptDAO
    user_name = bindparam("user_name", type_=String)
    address = bindparam("address", type_=String)
    attempt_id = bindparam("attempt_id", type_=UUID(as_uuid=True))
    in_window = attempts.created_at > func.now() - bindparam("window", type_=Interval)
    unsettled_since = func.now() - LOGIN_CHECK_TIMEOUT
    failed = or_(~attempts.in_progress, attempts.created_at <= unsettled_since)

    def nth_newest(
        key: ColumnElement[bool], offset: str, *only: ColumnElement[bool]
    ) -> ColumnElement[datetime]:
        return (
            select(attempts.created_at)
            .where(key, in_window, *only)
            .order_by(attempts.created_at.desc())
            .offset(bindparam(offset, type_=Integer))
            .limit(1)
            .scalar_subquery()
        )

    by_user = attempts.user_name == user_name
    by_address = attempts.address == address
    checked = select(
        nth_newest(by_user, "user_reached").label("user_reached_since"),
        nth_newest(by_user, "user_failed", failed).label("user_failed_since"),
        nth_newest(by_address, "address_reached").label("address_reached_since"),
        nth_newest(by_address, "address_failed", failed).label("address_failed_since"),
        func.now().label("checked_at"),
    ).cte("checked")
    allowed = select(user_name, address).where(
        checked.c.user_reached_since.is_(None),
        checked.c.user_failed_since.is_(None),
        checked.c.address_reached_since.is_(None),
        checked.c.address_failed_since.is_(None),
    )
    recorded = (
        insert(attempts)
        .from_select(["user_name", "address"], allowed)
        .returning(attempts.id)
        .cte("recorded")
    )
    begin = (
        select(
            checked,
            select(recorded.c.id).scalar_subquery().label("attempt_id"),
            UserDAO.id.label("user_id"),
            UserDAO.password_hash,
        )
        .select_from(checked)
        .outerjoin(UserDAO, UserDAO.name == user_name)
    )
    fail = (
        update(attempts)
        .where(attempts.id == attempt_id)
        .values(in_progress=False)
        .returning(attempts.id)
    )
    settled = or_(
        attempts.id == attempt_id, ~attempts.in_progress, attempts.created_at <= unsettled_since
    )
    succeed = delete(attempts).where(attempts.user_name == user_name, settled)
    return _LoginStatements(begin=begin, fail=fail, succeed=succeed.returning(attempts.id))


_LOGIN_STATEMENTS = _login_statements()


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
    async def empty_app_tables(cls, session: AsyncSession) -> None:
        """Delete every row of the app's tables (not the migration state): test isolation.

        DELETE rather than TRUNCATE: CockroachDB treats TRUNCATE as a schema change, which
        does not mix with the explicit transaction every unit of work runs in.
        """
        for table in reversed(BaseDAO.metadata.sorted_tables):
            await session.execute(table.delete())


@dataclass(frozen=True)
class Daos:
    """The DAO set the app uses; tests pass in-memory fakes with the same classmethods."""

    users: type[UserDAO]
    organizations: type[OrganizationDAO]
    memberships: type[MembershipDAO]
    spaces: type[SpaceDAO]
    todos: type[TodoDAO]
    idempotency_keys: type[IdempotencyKeyDAO]
    login_attempts: type[LoginAttemptDAO]

    @classmethod
    def real(cls) -> Daos:
        return cls(
            users=UserDAO,
            organizations=OrganizationDAO,
            memberships=MembershipDAO,
            spaces=SpaceDAO,
            todos=TodoDAO,
            idempotency_keys=IdempotencyKeyDAO,
            login_attempts=LoginAttemptDAO,
        )
