"""Keyset pagination: the cursor itself, then listing todos page by page over the API.

A walk must return every visible todo exactly once, newest first by (created_at, id), whatever
is inserted or deleted meanwhile, and never another organization's todos. Long walks, ties on
created_at and writes during a walk run on a real database in test_pagination_live.py.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from quart.typing import TestClientProtocol as QuartClient

from app.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Keyset, next_cursor
from app.schemas import SpaceListQuery, TodoListQuery
from tests.unit.assertions import (
    Caller,
    add_member,
    assert_validation_error,
    collect_pages,
    create_space,
    create_todo,
    new_caller,
    new_workspace,
)

MOMENT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    created_at: datetime
    id: uuid.UUID


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _real_cursor() -> str:
    return Keyset(MOMENT, uuid.UUID("12345678-1234-5678-1234-567812345678")).encode()


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def _todos(client: QuartClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get("/todos", query_string=params, headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert set(page) == {"items", "next_cursor"}
    return page


# Keyset -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [
        pytest.param(MOMENT, id="utc"),
        pytest.param(MOMENT.replace(tzinfo=timezone(timedelta(hours=5, minutes=30))), id="+0530"),
        pytest.param(MOMENT.replace(tzinfo=timezone(-timedelta(hours=8))), id="-0800"),
        pytest.param(MOMENT.replace(microsecond=0), id="whole-second"),
    ],
)
def test_keyset_roundtrips_through_its_cursor(created_at: datetime) -> None:
    keyset = Keyset(created_at, uuid.uuid4())

    cursor = keyset.encode()

    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), "URL-safe and unpadded"
    decoded = Keyset.decode(cursor)
    assert decoded == keyset, "the same instant and id"
    assert decoded.created_at.utcoffset() is not None


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("A", id="one-character"),
        pytest.param("garbage!", id="garbage"),
        pytest.param("curseur-é", id="non-ascii"),
        pytest.param(_b64("garbage"), id="base64-of-garbage"),
        pytest.param(_b64(b"\xff\xfe\xfd\xfc"), id="base64-of-invalid-utf8"),
        pytest.param(_b64(f"2024-05-06T07:08:09|{uuid.uuid4()}"), id="naive-timestamp"),
        pytest.param(_b64(f"{MOMENT.isoformat()}|not-a-uuid"), id="bad-uuid"),
        pytest.param(_b64(MOMENT.isoformat()), id="no-id"),
        pytest.param(_b64(f"|{uuid.uuid4()}"), id="no-timestamp"),
        pytest.param(_b64(f"{uuid.uuid4()}|{MOMENT.isoformat()}"), id="swapped"),
        pytest.param(_b64(f"{MOMENT.isoformat()}|{uuid.uuid4()}|x"), id="trailing-field"),
        pytest.param(_b64(f"yesterday|{uuid.uuid4()}"), id="word-timestamp"),
        pytest.param(
            _b64(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}"), id="after-year-9999-in-utc"
        ),
        pytest.param(_b64(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}"), id="before-year-1-in-utc"),
    ],
)
def test_keyset_decode_refuses_what_it_did_not_encode(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        Keyset.decode(cursor)


def test_keyset_decode_refuses_every_truncation_of_a_real_cursor() -> None:
    cursor = _real_cursor()

    for length in range(len(cursor)):
        with pytest.raises(ValueError, match="invalid cursor"):
            Keyset.decode(cursor[:length])


def test_a_cursor_query_parameter_is_decoded_and_serialised_back() -> None:
    keyset = Keyset(MOMENT, uuid.uuid4())

    query = TodoListQuery.model_validate({"cursor": keyset.encode()})

    assert query.cursor == keyset
    assert query.model_dump(mode="json")["cursor"] == keyset.encode()
    assert query.limit == DEFAULT_PAGE_SIZE


@pytest.mark.parametrize("model", [TodoListQuery, SpaceListQuery])
@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"cursor": _real_cursor().ljust(201, "!")}, id="decodable-cursor-over-200-characters"
        ),
        pytest.param({"cursor": "garbage!"}, id="cursor-garbage"),
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": MAX_PAGE_SIZE + 1}, id="limit-over-max"),
    ],
)
def test_list_queries_refuse_bad_cursors_and_limits(model: type, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(params)

    assert [error["loc"] for error in raised.value.errors()] == [(next(iter(params)),)]


# next_cursor --------------------------------------------------------------------------------


def _rows(count: int) -> list[Row]:
    """Newest first, as a DAO returns them; two share a created_at to exercise the id tie-break."""
    rows = [Row(MOMENT - timedelta(seconds=i // 2), uuid.uuid4()) for i in range(count)]
    return sorted(rows, key=lambda row: (row.created_at, row.id), reverse=True)


@pytest.mark.parametrize(("count", "limit"), [(0, 1), (1, 1), (2, 3), (3, 3), (50, 50)])
def test_next_cursor_is_none_when_the_rows_fit_in_the_page(count: int, limit: int) -> None:
    rows = _rows(count)

    page, cursor = next_cursor(rows, limit)

    assert page == rows
    assert cursor is None


@pytest.mark.parametrize("limit", [1, 2, 7, 100])
def test_next_cursor_splits_the_extra_row_off(limit: int) -> None:
    rows = _rows(limit + 1)

    page, cursor = next_cursor(rows, limit)

    assert page == rows[:limit]
    assert cursor is not None
    assert Keyset.decode(cursor) == Keyset(rows[limit - 1].created_at, rows[limit - 1].id)


# Listing todos over the API: order, filters, page size, cursors ----------------------------


async def test_list_todos_newest_first_of_every_visible_space_only(client: QuartClient) -> None:
    alice, bob = await new_caller(client), await new_caller(client)
    alices = await new_workspace(client, alice)
    second_space = await create_space(client, alice, alices.organization["id"])
    bobs = await new_workspace(client, bob)
    created = []
    for space_id in (alices.space["id"], second_space["id"], alices.space["id"]):
        created.append(await create_todo(client, alice, space_id))
        await create_todo(client, bob, bobs.space["id"])

    page = await _todos(client, alice)

    assert page["items"] == created[::-1]
    assert page["next_cursor"] is None
    assert len((await _todos(client, bob))["items"]) == 3


async def test_list_todos_filters_by_space_and_done(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    member = await new_caller(client)
    await add_member(client, workspace.owner, workspace.organization["id"], member)
    space_id = workspace.space["id"]
    other_space = await create_space(client, workspace.owner, workspace.organization["id"])
    open_here = await create_todo(client, workspace.owner, space_id)
    done_here = await create_todo(client, member, space_id, done=True)
    open_there = await create_todo(client, member, other_space["id"])
    done_there = await create_todo(client, workspace.owner, other_space["id"], done=True)

    async def ids(**params: Any) -> list[str]:
        return _ids((await _todos(client, member, **params))["items"])

    assert await ids(space_id=space_id) == [done_here["id"], open_here["id"]]
    assert await ids(space_id=other_space["id"]) == [done_there["id"], open_there["id"]]
    assert await ids(done="true") == [done_there["id"], done_here["id"]]
    assert await ids(done="false") == [open_there["id"], open_here["id"]]
    assert await ids(space_id=space_id, done="true") == [done_here["id"]]
    assert await ids(space_id=other_space["id"], done="false") == [open_there["id"]]
    assert await ids(space_id=str(uuid.uuid4())) == []


async def test_list_todos_default_page_is_50(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    created = [await create_todo(client, workspace.owner, workspace.space["id"]) for _ in range(51)]

    first = await _todos(client, workspace.owner)
    rest = await _todos(client, workspace.owner, cursor=first["next_cursor"])

    assert _ids(first["items"]) == _ids(created[::-1][:50])
    assert first["next_cursor"] is not None
    assert _ids(rest["items"]) == [created[0]["id"]]
    assert rest["next_cursor"] is None


async def test_list_todos_refuses_invalid_query_parameters(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    for _ in range(2):
        await create_todo(client, workspace.owner, workspace.space["id"])
    real_cursor = (await _todos(client, workspace.owner, limit=1))["next_cursor"]
    assert real_cursor
    cases: list[tuple[str, dict[str, str], str]] = [
        ("limit-0", {"limit": "0"}, "limit"),
        ("limit-101", {"limit": "101"}, "limit"),
        ("limit-negative", {"limit": "-1"}, "limit"),
        ("limit-abc", {"limit": "abc"}, "limit"),
        ("limit-fraction", {"limit": "1.5"}, "limit"),
        ("limit-beyond-64-bits", {"limit": "99999999999999999999999"}, "limit"),
        ("done-maybe", {"done": "maybe"}, "done"),
        ("space-id-not-a-uuid", {"space_id": "nope"}, "space_id"),
        ("space-id-sql", {"space_id": "1 OR 1=1"}, "space_id"),
        ("cursor-garbage", {"cursor": "garbage!"}, "cursor"),
        ("cursor-base64-of-garbage", {"cursor": _b64("garbage")}, "cursor"),
        ("cursor-base64-bad-uuid", {"cursor": _b64("2024-01-01T00:00:00+00:00|nope")}, "cursor"),
        ("cursor-naive-time", {"cursor": _b64(f"2024-01-01T00:00:00|{uuid.uuid4()}")}, "cursor"),
        ("cursor-non-ascii", {"cursor": "curseur-é"}, "cursor"),
        ("cursor-too-long", {"cursor": real_cursor * 10}, "cursor"),
        ("cursor-decodable-but-201-characters", {"cursor": real_cursor.ljust(201, "!")}, "cursor"),
        ("cursor-empty", {"cursor": ""}, "cursor"),
        (
            "cursor-after-year-9999-in-utc",
            {"cursor": _b64(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}")},
            "cursor",
        ),
        (
            "cursor-before-year-1-in-utc",
            {"cursor": _b64(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}")},
            "cursor",
        ),
    ]
    for cut in (1, 2, 3, 5, len(real_cursor) // 2, len(real_cursor) - 1):
        cases.append((f"cursor-truncated-by-{cut}", {"cursor": real_cursor[:-cut]}, "cursor"))

    for case, params, field in cases:
        with subtests.test(case=case):
            response = await client.get(
                "/todos", query_string=params, headers=workspace.owner.headers
            )

            detail = await assert_validation_error(response)
            assert [item["loc"][-1] for item in detail] == [field]


# Walking every page -------------------------------------------------------------------------


async def test_a_walk_ending_on_a_full_page_has_no_empty_extra_page(client: QuartClient) -> None:
    workspace = await new_workspace(client)
    for _ in range(14):
        await create_todo(client, workspace.owner, workspace.space["id"])

    pages = await collect_pages(client, workspace.owner, "/todos", {"limit": 7})

    assert [len(page["items"]) for page in pages] == [7, 7]
    assert pages[-1]["next_cursor"] is None
