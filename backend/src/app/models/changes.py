"""The change log of each organization: what the change feed (`app.api.changes`) reads.

Every statement that changes an object of an organization (the organization itself, a
member, a space, a todo) also, in the same statement, stamps the object's row with a
*position* (`change_position`) and appends a row here: (organization, position, kind, object
id, deleted). A position says which transaction wrote it:

- PostgreSQL: the writing transaction's id (`pg_current_xact_id()`). Ids are handed out as
  transactions start to write, not in commit order, so the reader only takes positions below
  its snapshot's xmin (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below
  it has ended, and every transaction that writes from now on gets an id at or above it.
- CockroachDB: the writing transaction's commit timestamp (`cluster_logical_timestamp()`,
  which fixes it). The reader takes positions up to its own read timestamp: a writer whose
  intent it meets below that timestamp must finish first, and one that would write into the
  range it read afterwards is pushed above it, which a fixed timestamp cannot take, so that
  writer restarts (40001, retried) with a later position.

Either way the *horizon* a reader hands out in its token is final: nothing can ever be
written below it, so no change that commits late can fall behind a token a client holds.

Positions order the log but not always the writes to one object (PostgreSQL ids are not in
commit order), so the feed compares each entry with the object's row: an entry is delivered
as an upsert only while it is the row's latest (`change_position` equal), with the row's data
as the reader sees it, which is then exactly what that entry's transaction wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate
from sqlalchemy.sql.selectable import CTE, Select

from app.db.executor import Executor, Statement
from app.models.base import BaseDAO
from app.models.parameters import integer_parameter, interval_parameter, uuid_parameter

Kind = Literal["member", "organization", "space", "todo"]
KINDS: tuple[Kind, ...] = ("member", "organization", "space", "todo")
"""In the order the log sorts them (by name), which is also the order of a snapshot."""


class WritePosition(expression.FunctionElement[Decimal]):
    """The position of the transaction that evaluates it (see the module's docstring)."""

    type = Numeric()
    name = "change_position"
    inherit_cache = True


@compiles(WritePosition)
def _write_position_postgresql(_: WritePosition, __: SQLCompiler, **___: Any) -> str:
    return "CAST(CAST(pg_current_xact_id() AS TEXT) AS NUMERIC)"


@compiles(WritePosition, "cockroachdb")
def _write_position_cockroachdb(_: WritePosition, __: SQLCompiler, **___: Any) -> str:
    return "cluster_logical_timestamp()"


class Horizon(expression.FunctionElement[Decimal]):
    """The first position a reader may not take yet: everything below it is final."""

    type = Numeric()
    name = "change_horizon"
    inherit_cache = True


@compiles(Horizon)
def _horizon_postgresql(_: Horizon, __: SQLCompiler, **___: Any) -> str:
    return "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS NUMERIC)"


@compiles(Horizon, "cockroachdb")
def _horizon_cockroachdb(_: Horizon, __: SQLCompiler, **___: Any) -> str:
    # The next logical tick after this transaction's timestamp: positions up to and
    # including its own timestamp are final.
    return "(cluster_logical_timestamp() + 0.0000000001)"


def change_position_column() -> Any:
    """The column every changing table has: the position of its row's latest write (0 for
    rows written before the change log existed, which a snapshot delivers)."""
    from sqlalchemy.orm import mapped_column

    return mapped_column(Numeric, nullable=False, server_default="0")


changes = Table(
    "changes",
    BaseDAO.metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("position", Numeric, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("object_id", UUID(as_uuid=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("organization_id", "position", "kind", "object_id"),
)
"""One row per object written per transaction. Its key is also the feed's order, so reading
an organization's changes after a cursor is one range scan, and no two writers ever update
one shared row (each appends its own)."""

change_horizons = Table(
    "change_horizons",
    BaseDAO.metadata,
    Column("taken_at", DateTime(timezone=True), primary_key=True),
    Column("position", Numeric, nullable=False),
)
"""The horizon as it stood at times past, one row per retention pass: it turns
CHANGES_RETENTION_SECONDS into a position, below which the log may be purged and a token
is too old (410)."""


def recorded(
    write: ReturningInsert[Any] | ReturningUpdate[Any] | ReturningDelete[Any],
    *,
    kind: Kind,
    deleted: bool,
    organization_id: str = "organization_id",
    object_id: str = "id",
    via_space: bool = False,
    returning: Sequence[str] | None = None,
) -> Select[Any]:
    """`write` (which RETURNs the columns named) and its entries in the log, as one statement.

    With `via_space`, the organization is that of the space whose id `write` returns as
    `space_id` (todos do not hold their organization). The statement returns `write`'s
    columns, or those named in `returning`.
    """
    written = write.cte("written")
    if via_space:
        from app.models.spaces import SpaceDAO

        source: Any = written.join(SpaceDAO, SpaceDAO.id == written.c.space_id)
        organization: Any = SpaceDAO.organization_id
    else:
        source = written
        organization = written.c[organization_id]
    entries = select(
        organization,
        WritePosition(),
        literal(kind, String),
        written.c[object_id],
        literal(deleted, Boolean),
    ).select_from(source)
    logged: CTE = (
        insert(changes)
        .from_select(["organization_id", "position", "kind", "object_id", "deleted"], entries)
        .on_conflict_do_nothing()
        .cte("logged")
    )
    columns = [written.c[name] for name in returning] if returning else list(written.c)
    return select(*columns).add_cte(logged)


class Entry(Protocol):
    @property
    def position(self) -> Decimal: ...
    @property
    def kind(self) -> str: ...
    @property
    def object_id(self) -> uuid.UUID: ...
    @property
    def deleted(self) -> bool: ...


NO_OBJECT = uuid.UUID(int=0)
"""The smallest id: a cursor at a bare position comes before every entry at it."""


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in an organization's log: entries strictly after it are still to come."""

    position: Decimal
    kind: str = ""
    object_id: uuid.UUID = NO_OBJECT


@dataclass(frozen=True)
class Window:
    """Entries after a cursor and below the horizon, at most `limit` of them."""

    entries: Sequence[Entry]
    horizon: Decimal
    more: bool
    oldest_allowed: Decimal | None
    """Cursors below this position are older than the retention period (410)."""


class ChangeDAO:
    """The log's statements (the table has no ORM class: its key is its order)."""

    @classmethod
    async def horizon(cls, executor: Executor) -> Decimal:
        row = await executor.one(_HORIZON, {})
        return Decimal(row.horizon)

    @classmethod
    async def window(
        cls,
        executor: Executor,
        organization_id: uuid.UUID,
        after: Cursor,
        limit: int,
        retention: timedelta,
    ) -> Window:
        """The log after `after`, below the horizon, with the retention boundary; one
        statement, so the three agree."""
        params = {
            "organization_id": organization_id,
            "after_position": after.position,
            "after_kind": after.kind,
            "after_object_id": after.object_id,
            "fetch": limit + 1,
            "retention": retention,
        }
        rows = list(await executor.rows(_WINDOW, params))
        head = rows[0]
        entries = [row for row in rows if row.kind is not None]
        return Window(
            entries=entries[:limit],
            horizon=Decimal(head.horizon),
            more=len(entries) > limit,
            oldest_allowed=head.oldest_allowed,
        )

    @classmethod
    async def oldest_allowed(cls, executor: Executor, retention: timedelta) -> Decimal | None:
        """Cursors below this position are older than `retention` (None: none is yet)."""
        row = await executor.one(_OLDEST_ALLOWED, {"retention": retention})
        return None if row.oldest_allowed is None else Decimal(row.oldest_allowed)

    @classmethod
    async def take_horizon(cls, executor: Executor) -> None:
        """Remember where the horizon stands now: retention turns times into positions
        through these."""
        await executor.rows(_TAKE_HORIZON, {})

    @classmethod
    async def forget_horizons(cls, executor: Executor, retention: timedelta) -> int:
        """Drop the horizons older than the newest one taken `retention` ago or before."""
        return len(await executor.rows(_FORGET_HORIZONS, {"retention": retention}))

    @classmethod
    async def purge_old_batch(
        cls, executor: Executor, organization_id: uuid.UUID, retention: timedelta, batch: int
    ) -> int:
        """Remove up to `batch` of an organization's entries older than `retention` (below
        the horizon taken that long ago); how many went."""
        params = {"organization_id": organization_id, "retention": retention, "batch": batch}
        return len(await executor.rows(_PURGE_OLD, params))

    @classmethod
    async def purge_organization_batch(
        cls, executor: Executor, organization_id: uuid.UUID, batch: int
    ) -> int:
        """Remove up to `batch` entries of a deleted organization; how many went."""
        params = {"organization_id": organization_id, "batch": batch}
        return len(await executor.rows(_PURGE_ORGANIZATION, params))


_ORGANIZATION = uuid_parameter("organization_id")
_BATCH = integer_parameter("batch")
_C = changes.c

_HORIZON = Statement(select(Horizon().label("horizon")))


def _boundary(before: Any) -> Any:
    """The position of the newest horizon taken at or before `before` (NULL if none)."""
    return (
        select(change_horizons.c.position)
        .where(change_horizons.c.taken_at <= before)
        .order_by(change_horizons.c.taken_at.desc())
        .limit(1)
        .scalar_subquery()
    )


_retention_start = func.now() - interval_parameter("retention")
_OLDEST_ALLOWED = Statement(select(_boundary(_retention_start).label("oldest_allowed")))

_horizon = select(Horizon().label("horizon")).cte("horizon")
_after = tuple_(_C.position, _C.kind, _C.object_id) > tuple_(
    bindparam("after_position", type_=Numeric()),
    bindparam("after_kind", type_=String()),
    uuid_parameter("after_object_id"),
)
_entries = (
    select(_C.position, _C.kind, _C.object_id, _C.deleted)
    .where(_C.organization_id == _ORGANIZATION, _after, _C.position < _horizon.c.horizon)
    .order_by(_C.position, _C.kind, _C.object_id)
    .limit(integer_parameter("fetch"))
    .lateral("entries")
)
_WINDOW = Statement(
    select(
        _horizon.c.horizon,
        _boundary(_retention_start).label("oldest_allowed"),
        _entries.c.position,
        _entries.c.kind,
        _entries.c.object_id,
        _entries.c.deleted,
    )
    .select_from(_horizon.outerjoin(_entries, literal(True)))
    .order_by(_entries.c.position, _entries.c.kind, _entries.c.object_id)
)
_TAKE_HORIZON = Statement(
    insert(change_horizons)
    .values(taken_at=func.now(), position=Horizon())
    .on_conflict_do_nothing()
    .returning(change_horizons.c.taken_at)
)
_newest_expired = (
    select(change_horizons.c.taken_at)
    .where(change_horizons.c.taken_at <= _retention_start)
    .order_by(change_horizons.c.taken_at.desc())
    .limit(1)
    .scalar_subquery()
)
_FORGET_HORIZONS = Statement(
    delete(change_horizons)
    .where(change_horizons.c.taken_at < _newest_expired)
    .returning(change_horizons.c.taken_at)
)
_key_columns = (_C.organization_id, _C.position, _C.kind, _C.object_id)
_PURGE_OLD = Statement(
    delete(changes)
    .where(
        tuple_(*_key_columns).in_(
            select(*_key_columns)
            .where(
                _C.organization_id == _ORGANIZATION,
                _C.position < _boundary(_retention_start),
            )
            .order_by(_C.position)
            .limit(_BATCH)
        )
    )
    .returning(_C.position)
)
_PURGE_ORGANIZATION = Statement(
    delete(changes)
    .where(
        tuple_(*_key_columns).in_(
            select(*_key_columns)
            .where(_C.organization_id == _ORGANIZATION)
            .order_by(_C.position)
            .limit(_BATCH)
        )
    )
    .returning(_C.position)
)
