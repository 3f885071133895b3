"""The list route's own JSON encoder must write what pydantic would write for a TodoPage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from asyncpg.pgproto import pgproto
from hypothesis import given, settings
from hypothesis import strategies as st

from app.schemas import TodoOut, TodoPage, todo_json, todo_page_json

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
_MOMENT = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)


class DriverLikeRow:
    """A row as the driver hands it over (asyncpg's Record): asyncpg's UUID subclass,
    `keys()`, iteration over the values in that order, and `_asdict` (app.db.executor.Row)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def keys(self) -> list[str]:
        return list(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values.values())

    def _asdict(self) -> dict[str, Any]:
        return dict(self._values)


class SessionLikeRow:
    """A row as SQLAlchemy's session hands it over: `_asdict`, no `keys()`."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._asdict = lambda: dict(values)


@st.composite
def todo_rows(draw: st.DrawFn) -> dict[str, Any]:
    driver_uuid = draw(st.booleans())

    def an_id() -> uuid.UUID:
        value = draw(st.uuids())
        return pgproto.UUID(str(value)) if driver_uuid else value

    return {
        "id": an_id(),
        "title": draw(_TEXT),
        "content": draw(_TEXT),
        "done": draw(st.booleans()),
        "space_id": an_id(),
        "user_id": an_id(),
        "created_at": draw(_MOMENT),
        "updated_at": draw(_MOMENT),
        "version": draw(st.integers(min_value=1, max_value=2**31 - 1)),
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(todo_rows(), max_size=5), st.one_of(st.none(), _TEXT))
def test_the_page_encoder_writes_what_pydantic_writes(
    rows: list[dict[str, Any]], cursor: str | None
) -> None:
    expected = TodoPage(
        items=[TodoOut.model_validate(row) for row in rows], next_cursor=cursor
    ).model_dump_json()

    from_driver = todo_page_json([DriverLikeRow(row) for row in rows], cursor)
    from_session = todo_page_json([SessionLikeRow(row) for row in rows], cursor)

    assert json.loads(from_driver) == json.loads(expected)
    assert json.loads(from_session) == json.loads(expected)


def test_timestamps_are_written_in_utc_with_z_as_pydantic_does() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {
        "id": uuid.UUID(int=1),
        "title": "t",
        "content": "",
        "done": False,
        "space_id": uuid.UUID(int=2),
        "user_id": uuid.UUID(int=3),
        "created_at": moment,
        "updated_at": moment.replace(microsecond=120),
        "version": 1,
    }

    item = json.loads(todo_page_json([DriverLikeRow(row)], None))["items"][0]

    assert item["created_at"] == "2026-01-02T03:04:05Z"
    assert item["updated_at"] == "2026-01-02T03:04:05.000120Z"
    assert item["id"] == "00000000-0000-0000-0000-000000000001"


@settings(max_examples=100, deadline=None)
@given(todo_rows())
def test_one_todo_is_written_as_pydantic_writes_it(row: dict[str, Any]) -> None:
    expected = TodoOut.model_validate(row).model_dump_json()

    assert json.loads(todo_json(DriverLikeRow(row))) == json.loads(expected)
