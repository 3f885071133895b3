"""Todos: members read every todo of their organization's spaces; authors and owners change.

The statements of the hot routes check visibility and the right to change inside the one
INSERT, SELECT, UPDATE or DELETE, so the happy path is one round trip. Each is built here once
per shape (which filters, which fields), with bind parameters for the values.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Exists,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Mapped, aliased, mapped_column
from sqlalchemy.sql.elements import BindParameter

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO, Role
from app.models.changes import WritePosition, change_position_column, recorded
from app.models.organizations import (
    MembershipDAO,
    OrganizationDAO,
    membership_of,
    organization_is_live,
)
from app.models.parameters import (
    after_cursor,
    boolean_parameter,
    integer_parameter,
    keyset_arguments,
    newest_first,
    string_parameter,
    text_parameter,
    uuid_parameter,
)
from app.models.sessions import Caller, token_not_revoked
from app.models.spaces import SpaceDAO
from app.pagination import Keyset


class TodoRow(Protocol):
    """A todo as a plain row."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def space_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID | None: ...
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


@dataclass(frozen=True)
class TodoAccess:
    """What decides whether the caller may change a todo; read only when a change failed."""

    version: int
    author_id: uuid.UUID | None
    """None once the author deleted their account."""
    caller_role: Role


CHANGEABLE_FIELDS = ("content", "done", "title")
"""What PATCH may change, in the order the UPDATE statements are keyed by."""


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
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    """The author; NULL once they deleted their account (the todo stays with its space)."""
    change_position: Mapped[Decimal] = change_position_column()
    """The position of the latest write (app.models.changes)."""

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
        """Insert without a visibility check: for seeding, where the author is known."""
        params = {
            "in_space_id": space_id,
            "author_id": user_id,
            "new_title": title,
            "new_content": content,
            "new_done": done,
        }
        return await executor.one(_CREATE, params)

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
        """Insert a todo if the caller belongs to the space's organization; None otherwise."""
        params = {
            **caller.parameters(),
            "in_space_id": space_id,
            "new_title": title,
            "new_content": content,
            "new_done": done,
        }
        return await executor.one_or_none(_CREATE_VISIBLE, params)

    @classmethod
    async def get_visible(
        cls, executor: Executor, todo_id: uuid.UUID, caller: Caller
    ) -> TodoRow | None:
        return await executor.one_or_none(_VISIBLE, {**caller.parameters(), "todo_id": todo_id})

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
        """Up to `fetch` todos the caller can see, newest first, after the cursor.

        For each visible space (one, with `space_id`) a LATERAL subquery reads at most `fetch`
        rows from that space's index, starting at the cursor; the outer query merges them.
        The cost depends on the page size and the number of spaces, never on the table size.
        """
        params: dict[str, object] = {**caller.parameters(), "fetch": fetch}
        if space_id is not None:
            params["in_space_id"] = space_id
        if done is not None:
            params["with_done"] = done
        params.update(keyset_arguments(after))
        statement = _PAGES[space_id is not None, done is not None, after is not None]
        return list(await executor.rows(statement, params))

    @classmethod
    async def update_permitted(
        cls,
        executor: Executor,
        todo_id: uuid.UUID,
        caller: Caller,
        changes: Mapping[str, object],
        versions: Collection[int] | None = None,
    ) -> TodoRow | None:
        """Apply `changes` (fields of CHANGEABLE_FIELDS) and bump the version atomically, in
        one statement that also checks the caller's right and the expected versions. None
        when nothing matched (see `access_of` for why)."""
        statement = _UPDATES[tuple(sorted(changes)), versions is not None]
        params: dict[str, object] = {**caller.parameters(), "todo_id": todo_id}
        params.update({f"new_{name}": value for name, value in changes.items()})
        if versions is not None:
            params["versions"] = list(versions)
        return await executor.one_or_none(statement, params)

    @classmethod
    async def delete_permitted(
        cls,
        executor: Executor,
        todo_id: uuid.UUID,
        caller: Caller,
        versions: Collection[int] | None = None,
    ) -> bool:
        params: dict[str, object] = {**caller.parameters(), "todo_id": todo_id}
        if versions is not None:
            params["versions"] = list(versions)
        return await executor.one_or_none(_DELETES[versions is not None], params) is not None

    @classmethod
    async def access_of(
        cls, executor: Executor, todo_id: uuid.UUID, user_id: uuid.UUID
    ) -> TodoAccess | None:
        """The todo's version and author and the caller's role; None if the caller can't see it."""
        row = await executor.one_or_none(_ACCESS, {"todo_id": todo_id, "caller_id": user_id})
        if row is None:
            return None
        return TodoAccess(version=row.version, author_id=row.user_id, caller_role=Role(row.role))

    @classmethod
    async def purge_batch_of_space(cls, executor: Executor, space_id: uuid.UUID, batch: int) -> int:
        """Remove up to `batch` todos of a deleted space; how many went."""
        params = {"in_space_id": space_id, "batch": batch}
        return len(await executor.rows(_PURGE_OF_SPACE, params))

    @classmethod
    async def purge_batch_of_organization(
        cls, executor: Executor, organization_id: uuid.UUID, batch: int
    ) -> int:
        """Remove up to `batch` todos of a deleted organization's spaces; how many went."""
        params = {"organization_id": organization_id, "batch": batch}
        return len(await executor.rows(_PURGE_OF_ORGANIZATION, params))

    @classmethod
    async def disown_batch(cls, executor: Executor, user_id: uuid.UUID, batch: int) -> int:
        """Hand up to `batch` todos of a deleted account over to their spaces (author NULL)."""
        params = {"author_id": user_id, "batch": batch}
        return len(await executor.rows(_DISOWN, params))

    @classmethod
    async def count_in_space(cls, executor: Executor, space_id: uuid.UUID) -> int:
        row = await executor.one(_COUNT_IN_SPACE, {"in_space_id": space_id})
        return int(row.count)


TODOS = [column for column in TodoDAO.__table__.c if column.name != "change_position"]
"""What a todo is to its readers: every column but the change log's stamp."""
_TODO = uuid_parameter("todo_id")
_CALLER = uuid_parameter("caller_id")
_SPACE = uuid_parameter("in_space_id")
_SPACE_LIVE = SpaceDAO.deleted_at.is_(None)
_LIVE_ORGANIZATION = aliased(OrganizationDAO)
_BATCH = integer_parameter("batch")
_NEW_VALUES: dict[str, BindParameter[Any]] = {
    "title": string_parameter("new_title"),
    "content": text_parameter("new_content"),
    "done": boolean_parameter("new_done"),
}

_CREATE = Statement(
    recorded(
        insert(TodoDAO)
        .values(
            space_id=_SPACE,
            user_id=uuid_parameter("author_id"),
            title=_NEW_VALUES["title"],
            content=_NEW_VALUES["content"],
            done=_NEW_VALUES["done"],
            change_position=WritePosition(),
        )
        .returning(*TODOS),
        kind="todo",
        deleted=False,
        via_space=True,
    )
)
_CREATE_VISIBLE = Statement(
    recorded(
        insert(TodoDAO)
        .from_select(
            ["space_id", "user_id", "title", "content", "done", "change_position"],
            select(
                SpaceDAO.id,
                _CALLER,
                _NEW_VALUES["title"],
                _NEW_VALUES["content"],
                _NEW_VALUES["done"],
                WritePosition(),
            ).where(
                SpaceDAO.id == _SPACE,
                _SPACE_LIVE,
                membership_of(_CALLER, SpaceDAO.organization_id),
                token_not_revoked(),
            ),
        )
        .returning(*TODOS),
        kind="todo",
        deleted=False,
        via_space=True,
    )
)
_VISIBLE = Statement(
    select(*TODOS)
    .join(SpaceDAO, SpaceDAO.id == TodoDAO.space_id)
    .where(
        TodoDAO.id == _TODO,
        _SPACE_LIVE,
        membership_of(_CALLER, SpaceDAO.organization_id),
        token_not_revoked(),
    )
)
_ACCESS = Statement(
    select(TodoDAO.version, TodoDAO.user_id, MembershipDAO.role)
    .join(SpaceDAO, SpaceDAO.id == TodoDAO.space_id)
    .join(
        MembershipDAO,
        and_(
            MembershipDAO.organization_id == SpaceDAO.organization_id,
            MembershipDAO.user_id == _CALLER,
        ),
    )
    .where(TodoDAO.id == _TODO, _SPACE_LIVE, organization_is_live(SpaceDAO.organization_id))
)
_COUNT_IN_SPACE = Statement(
    select(func.count().label("count")).select_from(TodoDAO).where(TodoDAO.space_id == _SPACE)
)


def _page(by_space: bool, by_done: bool, after: bool) -> Statement:
    spaces = select(SpaceDAO.id).where(
        _SPACE_LIVE, membership_of(_CALLER, SpaceDAO.organization_id), token_not_revoked()
    )
    if by_space:
        spaces = spaces.where(SpaceDAO.id == _SPACE)
    visible = spaces.subquery("visible_spaces")
    page = select(*TODOS).where(TodoDAO.space_id == visible.c.id)
    if by_done:
        page = page.where(TodoDAO.done == boolean_parameter("with_done"))
    if after:
        page = page.where(after_cursor(TodoDAO.created_at, TodoDAO.id))
    fetch = integer_parameter("fetch")
    lateral_page = (
        page.order_by(*newest_first(TodoDAO.created_at, TodoDAO.id)).limit(fetch).lateral("page")
    )
    return Statement(
        select(*lateral_page.c)
        .select_from(visible)
        .join(lateral_page, true())
        .order_by(*newest_first(lateral_page.c.created_at, lateral_page.c.id))
        .limit(fetch)
    )


def _changeable_by_caller() -> Exists:
    """EXISTS: the caller is the author or an owner, and a member of the organization, whose
    space and organization are not deleted; and the caller's token still counts."""
    return exists().where(
        SpaceDAO.id == TodoDAO.space_id,
        _SPACE_LIVE,
        _LIVE_ORGANIZATION.id == SpaceDAO.organization_id,
        _LIVE_ORGANIZATION.deleted_at.is_(None),
        MembershipDAO.organization_id == SpaceDAO.organization_id,
        MembershipDAO.user_id == _CALLER,
        or_(TodoDAO.user_id == _CALLER, MembershipDAO.role == Role.OWNER.value),
        token_not_revoked(),
    )


def _version_in() -> ColumnElement[bool]:
    """`version = ANY($n)`: one array parameter for any number of If-Match versions, so the
    statement's text, and its prepared form, stay the same whatever the count."""
    return TodoDAO.version == any_(bindparam("versions", type_=ARRAY(Integer)))


def _update(fields: tuple[str, ...], by_version: bool) -> Statement:
    stmt = (
        update(TodoDAO)
        .where(TodoDAO.id == _TODO, _changeable_by_caller())
        .values(
            **{name: _NEW_VALUES[name] for name in fields},
            version=TodoDAO.version + 1,
            updated_at=func.now(),
            change_position=WritePosition(),
        )
        .returning(*TODOS)
    )
    if by_version:
        stmt = stmt.where(_version_in())
    return Statement(recorded(stmt, kind="todo", deleted=False, via_space=True))


def _delete(by_version: bool) -> Statement:
    stmt = (
        delete(TodoDAO)
        .where(TodoDAO.id == _TODO, _changeable_by_caller())
        .returning(TodoDAO.id, TodoDAO.space_id)
    )
    if by_version:
        stmt = stmt.where(_version_in())
    return Statement(recorded(stmt, kind="todo", deleted=True, via_space=True, returning=["id"]))


_PURGE_OF_SPACE = Statement(
    recorded(
        delete(TodoDAO)
        .where(TodoDAO.id.in_(select(TodoDAO.id).where(TodoDAO.space_id == _SPACE).limit(_BATCH)))
        .returning(TodoDAO.id, TodoDAO.space_id),
        kind="todo",
        deleted=True,
        via_space=True,
        returning=["id"],
    )
)
"""A deleted space's todos leave its organization's change feed as they go: one delete each,
in the batch that removes them (the space's own delete came first)."""
_PURGE_OF_ORGANIZATION = Statement(
    delete(TodoDAO)
    .where(
        TodoDAO.id.in_(
            select(TodoDAO.id)
            .join(SpaceDAO, SpaceDAO.id == TodoDAO.space_id)
            .where(SpaceDAO.organization_id == uuid_parameter("organization_id"))
            .limit(_BATCH)
        )
    )
    .returning(TodoDAO.id)
)
_author = uuid_parameter("author_id")
_DISOWN = Statement(
    recorded(
        update(TodoDAO)
        .where(TodoDAO.id.in_(select(TodoDAO.id).where(TodoDAO.user_id == _author).limit(_BATCH)))
        .values(
            user_id=None,
            version=TodoDAO.version + 1,
            updated_at=func.now(),
            change_position=WritePosition(),
        )
        .returning(TodoDAO.id, TodoDAO.space_id),
        kind="todo",
        deleted=False,
        via_space=True,
        returning=["id"],
    )
)

_PAGES = {shape: _page(*shape) for shape in itertools.product((False, True), repeat=3)}
"""One statement per shape of the page query: by space or not, by `done` or not, a cursor."""
_UPDATES = {
    (fields, by_version): _update(fields, by_version)
    for size in range(1, len(CHANGEABLE_FIELDS) + 1)
    for fields in itertools.combinations(CHANGEABLE_FIELDS, size)
    for by_version in (False, True)
}
"""One UPDATE per set of changed fields (sorted by name) and with or without If-Match."""
_DELETES = {by_version: _delete(by_version) for by_version in (False, True)}
