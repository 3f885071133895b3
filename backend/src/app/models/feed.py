"""What the change feed reads besides the log: the objects themselves, as the caller sees them.

A snapshot (a feed without a token) pages through an organization's objects kind by kind; a
window of the log needs the current rows of the objects its entries name. Both return each
object's `change_position`, which the feed compares with the log (app.models.changes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, any_, bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from app.db.executor import Executor, Row, Statement
from app.models.changes import Kind
from app.models.organizations import MembershipDAO, OrganizationDAO
from app.models.parameters import integer_parameter, timestamp_parameter, uuid_parameter
from app.models.spaces import SpaceDAO
from app.models.todos import TODOS, TodoDAO
from app.models.users import UserDAO

SNAPSHOT_ORDER: tuple[Kind, ...] = ("organization", "member", "space", "todo")
"""The order a snapshot delivers kinds in: containers before what they contain."""


class FeedDAO:
    """Reads of the feed; every statement is limited to one organization."""

    @classmethod
    async def current(
        cls,
        executor: Executor,
        kind: Kind,
        organization_id: uuid.UUID,
        caller_id: uuid.UUID,
        object_ids: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, Row]:
        """The visible objects among `object_ids`, by id (a member's id is its user's)."""
        params = {
            "organization_id": organization_id,
            "caller_id": caller_id,
            "object_ids": list(object_ids),
        }
        rows = await executor.rows(_CURRENT[kind], params)
        return {row.object_id: row for row in rows}

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
        """Up to `fetch` visible objects of `kind` whose latest write is below `below`, in
        snapshot order after the cursor `after` (each row's `cursor` columns)."""
        params: dict[str, object] = {
            "organization_id": organization_id,
            "caller_id": caller_id,
            "below": below,
            "fetch": fetch,
        }
        if after is not None:
            params.update(zip(_CURSOR_PARAMETERS[kind], after, strict=True))
        return list(await executor.rows(_SNAPSHOTS[kind, after is not None], params))


_ORGANIZATION = uuid_parameter("organization_id")
_CALLER = uuid_parameter("caller_id")
_IDS = bindparam("object_ids", type_=ARRAY(UUID(as_uuid=True)))
_BELOW = bindparam("below", type_=Numeric())


def _organization() -> Any:
    return (
        select(
            OrganizationDAO.id.label("object_id"),
            OrganizationDAO.change_position,
            OrganizationDAO.id,
            OrganizationDAO.name,
            OrganizationDAO.created_at,
            MembershipDAO.role,
        )
        .join(
            MembershipDAO,
            (MembershipDAO.organization_id == OrganizationDAO.id)
            & (MembershipDAO.user_id == _CALLER),
        )
        .where(OrganizationDAO.id == _ORGANIZATION, OrganizationDAO.deleted_at.is_(None))
    )


def _members() -> Any:
    return (
        select(
            MembershipDAO.user_id.label("object_id"),
            MembershipDAO.change_position,
            MembershipDAO.organization_id,
            MembershipDAO.user_id,
            UserDAO.name.label("user_name"),
            MembershipDAO.role,
            MembershipDAO.created_at,
        )
        .join(UserDAO, UserDAO.id == MembershipDAO.user_id)
        .where(MembershipDAO.organization_id == _ORGANIZATION)
    )


_SPACE_COLUMNS = (
    SpaceDAO.id,
    SpaceDAO.name,
    SpaceDAO.organization_id,
    SpaceDAO.created_at,
    SpaceDAO.updated_at,
)


def _spaces() -> Any:
    return select(SpaceDAO.id.label("object_id"), SpaceDAO.change_position, *_SPACE_COLUMNS).where(
        SpaceDAO.organization_id == _ORGANIZATION, SpaceDAO.deleted_at.is_(None)
    )


def _todos() -> Any:
    return (
        select(TodoDAO.id.label("object_id"), TodoDAO.change_position, *TODOS)
        .join(SpaceDAO, SpaceDAO.id == TodoDAO.space_id)
        .where(SpaceDAO.organization_id == _ORGANIZATION, SpaceDAO.deleted_at.is_(None))
    )


_VISIBLE: dict[Kind, Any] = {
    "organization": _organization(),
    "member": _members(),
    "space": _spaces(),
    "todo": _todos(),
}
"""Each kind's visible objects in the organization, with their ids and latest positions."""
_CURRENT: dict[Kind, Statement] = {
    kind: Statement(visible.where(visible.selected_columns.object_id == any_(_IDS)))
    for kind, visible in _VISIBLE.items()
}

_CURSOR_COLUMNS: dict[Kind, tuple[Any, ...]] = {
    "organization": (OrganizationDAO.id,),
    "member": (MembershipDAO.user_id,),
    "space": (SpaceDAO.id,),
    # The index (space_id, created_at, id) gives this order: a range scan per page.
    "todo": (TodoDAO.space_id, TodoDAO.created_at, TodoDAO.id),
}
_CURSOR_PARAMETERS: dict[Kind, tuple[str, ...]] = {
    kind: tuple(f"after_{index}" for index in range(len(columns)))
    for kind, columns in _CURSOR_COLUMNS.items()
}


def _cursor_parameter(column: Any, name: str) -> Any:
    return timestamp_parameter(name) if column.name == "created_at" else uuid_parameter(name)


def _snapshot(kind: Kind, after: bool) -> Statement:
    columns = _CURSOR_COLUMNS[kind]
    visible = _VISIBLE[kind]
    stmt = visible.where(visible.selected_columns.change_position < _BELOW)
    if after:
        cursor = [
            _cursor_parameter(column, name)
            for column, name in zip(columns, _CURSOR_PARAMETERS[kind], strict=True)
        ]
        stmt = stmt.where(tuple_(*columns) > tuple_(*cursor))
    stmt = stmt.add_columns(*(column.label(f"cursor_{i}") for i, column in enumerate(columns)))
    return Statement(stmt.order_by(*columns).limit(integer_parameter("fetch")))


_SNAPSHOTS: dict[tuple[Kind, bool], Statement] = {
    (kind, after): _snapshot(kind, after) for kind in SNAPSHOT_ORDER for after in (False, True)
}
