"""Keyset (cursor) pagination: a page is "the next N rows after this (created_at, id)".

Unlike OFFSET, the database seeks straight to the cursor through an index, so page 10,000
costs what page 1 costs, and rows inserted meanwhile (which are newer, so sort before the
cursor) never shift a page. Ties on created_at (rows of one transaction share it) are broken
by id. The cursor is opaque to clients: base64url of the last row's key.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol, TypeVar

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

DEFAULT_PAGE_SIZE = 50
INVALID_CURSOR = "invalid cursor: pass back a next_cursor from a previous page"
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Keyset:
    """The sort key of a row; a page continues strictly after it (newest first)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Keyset:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            created_at, _, row_id = base64.urlsafe_b64decode(padded).decode().partition("|")
            moment = datetime.fromisoformat(created_at)
            if moment.tzinfo is None:
                raise ValueError("naive timestamp")
            # In UTC, as the database compares it; a date that leaves the calendar this way
            # (year 1 at +14:00) is no cursor we ever issued.
            return cls(moment.astimezone(UTC), uuid.UUID(row_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise ValueError(INVALID_CURSOR) from None


def _decode(value: object) -> object:
    if isinstance(value, str):
        if len(value) > 200:
            raise ValueError(INVALID_CURSOR)
        return Keyset.decode(value)
    return value


Cursor = Annotated[
    Keyset,
    BeforeValidator(_decode),
    PlainSerializer(Keyset.encode, return_type=str),
    WithJsonSchema({"type": "string", "description": "next_cursor of the previous page"}),
]
"""A query parameter that arrives as an opaque string and is validated into a Keyset."""


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


RowT = TypeVar("RowT", bound=Keyed)


def next_cursor(rows: list[RowT], limit: int) -> tuple[list[RowT], str | None]:
    """Split the `limit + 1` rows a DAO fetched into the page and the cursor to the next one."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, Keyset(page[-1].created_at, page[-1].id).encode()
