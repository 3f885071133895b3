"""Typed bind parameters and the keyset order, shared by the statements of every resource.

Statements are built once, so every value that varies per call is a bind parameter; these
give each one its SQL type, which the driver needs to encode it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Interval,
    String,
    Text,
    UnaryExpression,
    bindparam,
    tuple_,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter

from app.pagination import Keyset

Column: TypeAlias = ColumnElement[Any] | InstrumentedAttribute[Any]


def uuid_parameter(name: str) -> BindParameter[uuid.UUID]:
    return bindparam(name, type_=UUID(as_uuid=True))


def string_parameter(name: str) -> BindParameter[str]:
    return bindparam(name, type_=String)


def text_parameter(name: str) -> BindParameter[str]:
    return bindparam(name, type_=Text)


def integer_parameter(name: str) -> BindParameter[int]:
    return bindparam(name, type_=Integer)


def boolean_parameter(name: str) -> BindParameter[bool]:
    return bindparam(name, type_=Boolean)


def timestamp_parameter(name: str) -> BindParameter[datetime]:
    return bindparam(name, type_=DateTime(timezone=True))


def interval_parameter(name: str) -> BindParameter[Any]:
    return bindparam(name, type_=Interval)


def newest_first(
    created_at: Column, row_id: Column
) -> tuple[UnaryExpression[Any], UnaryExpression[Any]]:
    """The keyset order of every page: newest first, ties broken by id."""
    return created_at.desc(), row_id.desc()


def after_cursor(created_at: Column, row_id: Column) -> ColumnElement[bool]:
    """Rows strictly older than the cursor (`after_created_at`, `after_id`) in
    (created_at, id) order: an index range scan."""
    return tuple_(created_at, row_id) < tuple_(
        timestamp_parameter("after_created_at"), uuid_parameter("after_id")
    )


def after_cursor_oldest_first(created_at: Column, row_id: Column) -> ColumnElement[bool]:
    """Rows strictly newer than the cursor, for pages in the order rows were made."""
    return tuple_(created_at, row_id) > tuple_(
        timestamp_parameter("after_created_at"), uuid_parameter("after_id")
    )


def keyset_arguments(after: Keyset | None) -> dict[str, object]:
    """The cursor's parameters for `after_cursor`, or none without a cursor."""
    if after is None:
        return {}
    return {"after_created_at": after.created_at, "after_id": after.id}
