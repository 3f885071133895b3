"""Request bodies over MAX_BODY_BYTES are 413 and JSON nested over MAX_JSON_DEPTH is 422, in the
one error shape, whether or not the client declared the body's length.

A chunked body (no Content-Length) is sent here as Hypercorn hands it to the app: several
`http.request` messages with `more_body`, through the test client's raw connection.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart, Response
from quart.typing import TestClientProtocol as QuartClient

from app.http.body_limits import DrainUnreadBody
from app.http.json_limits import JSON_TOO_DEEP, JSONTooDeep, check_nesting
from app.main import create_app
from tests import fakes
from tests.conftest import PASSWORD, make_settings, unique_name
from tests.unit.assertions import (
    assert_created,
    assert_error,
    assert_validation_error,
    new_caller,
)

SMALL_BODY_LIMIT = 1024
CHUNK = 256
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


@pytest.fixture
async def small_body_app(data_dir: Path) -> AsyncIterator[Quart]:
    """An app that accepts request bodies of at most 1 KiB."""
    fakes.reset()
    settings = make_settings(data_dir, max_body_bytes=SMALL_BODY_LIMIT)
    app = create_app(settings, daos=fakes.fake_daos(), database=fakes.FakeDatabase(settings))
    async with app.test_app():
        yield app
    fakes.reset()


async def _send_chunked(
    app: Quart, path: str, body: bytes, headers: dict[str, str], declared: bool = False
) -> Response:
    """POST `body` in CHUNK-sized messages, without Content-Length unless `declared`."""
    if declared:
        headers = {**headers, "Content-Length": str(len(body))}
    client = app.test_client()
    async with client.request(path, method="POST", headers=headers) as connection:
        for start in range(0, len(body), CHUNK):
            await connection.send(body[start : start + CHUNK])
        await connection.send_complete()
    return await connection.as_response()


def _oversized_registration() -> bytes:
    body = {"name": unique_name(), "password": "x" * (2 * SMALL_BODY_LIMIT)}
    return json.dumps(body).encode()


def _oversized_login_form() -> bytes:
    return f"grant_type=password&username=someone&password={'x' * 2 * SMALL_BODY_LIMIT}".encode()


# Body size -------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_json_body_is_413(small_body_app: Quart, declared: bool) -> None:
    response = await _send_chunked(
        small_body_app, "/auth/register", _oversized_registration(), JSON, declared=declared
    )

    detail = await assert_error(response, 413)
    assert isinstance(detail, str)
    assert fakes.FakeUserDAO.rows == {}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_form_body_is_413(small_body_app: Quart, declared: bool) -> None:
    response = await _send_chunked(
        small_body_app, "/auth/login", _oversized_login_form(), FORM, declared=declared
    )

    await assert_error(response, 413)


async def test_a_declared_length_over_the_limit_is_413_even_with_a_short_body(
    small_body_app: Quart,
) -> None:
    headers = {**JSON, "Content-Length": str(SMALL_BODY_LIMIT + 1)}
    body = json.dumps({"name": unique_name(), "password": PASSWORD}).encode()

    response = await _send_chunked(small_body_app, "/auth/register", body, headers)

    await assert_error(response, 413)
    assert fakes.FakeUserDAO.rows == {}


async def test_a_chunked_body_within_the_limit_is_accepted(small_body_app: Quart) -> None:
    body = (json.dumps({"name": unique_name(), "password": PASSWORD}) + " " * 600).encode()
    assert CHUNK < len(body) < SMALL_BODY_LIMIT

    response = await _send_chunked(small_body_app, "/auth/register", body, JSON)

    await assert_created(response)


async def test_a_body_of_exactly_the_limit_is_accepted(small_body_app: Quart) -> None:
    body = json.dumps({"name": unique_name(), "password": PASSWORD})
    body += " " * (SMALL_BODY_LIMIT - len(body))  # whitespace is valid JSON padding
    assert len(body.encode()) == SMALL_BODY_LIMIT

    response = await _send_chunked(small_body_app, "/auth/register", body.encode(), JSON)

    await assert_created(response)


# JSON nesting ----------------------------------------------------------------------------------


def _nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of alternating objects and arrays around `leaf`."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


async def _post_json(client: QuartClient, path: str, text: str, **headers: str) -> Response:
    return await client.post(path, data=text, headers={**JSON, **headers})


def _assert_too_deep(detail: list[dict[str, Any]]) -> None:
    assert [item["type"] for item in detail] == [JSON_TOO_DEEP]
    assert detail[0]["loc"] == ["body"]


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
async def test_json_nested_over_the_limit_is_422(client: QuartClient, path: str) -> None:
    body = {"name": unique_name(), "username": "x", "password": _nested(33)}

    response = await _post_json(client, path, json.dumps(body))

    _assert_too_deep(await assert_validation_error(response))
    assert fakes.FakeUserDAO.rows == {}


async def test_json_at_the_limit_is_parsed_and_validated(client: QuartClient) -> None:
    body = _nested(32, leaf={"name": unique_name(), "password": PASSWORD})
    assert _depth(body) == 33  # the leaf object is the 33rd level
    shallower = _nested(31, leaf={"name": unique_name(), "password": PASSWORD})

    too_deep = await _post_json(client, "/auth/register", json.dumps(body))
    at_limit = await _post_json(client, "/auth/register", json.dumps(shallower))

    _assert_too_deep(await assert_validation_error(too_deep))
    detail = await assert_validation_error(at_limit)  # parsed: a list is not a registration
    assert JSON_TOO_DEEP not in {item["type"] for item in detail}


@pytest.mark.parametrize("opening", ["[", "{", '{"a":'], ids=["arrays", "objects", "members"])
async def test_json_deep_enough_to_overflow_the_parser_is_422_not_500(
    client: QuartClient, opening: str
) -> None:
    text = opening * 100_000

    response = await _post_json(client, "/auth/register", text)

    _assert_too_deep(await assert_validation_error(response))


async def test_balanced_json_deeper_than_the_recursion_limit_is_422(client: QuartClient) -> None:
    response = await _post_json(client, "/auth/register", "[" * 5000 + "]" * 5000)

    _assert_too_deep(await assert_validation_error(response))


async def test_unbalanced_brackets_are_malformed_json_400(client: QuartClient) -> None:
    response = await _post_json(client, "/auth/register", "]" * 10 + "[" * 40)

    await assert_error(response, 400)


async def test_brackets_inside_strings_do_not_count(client: QuartClient) -> None:
    name = unique_name()
    password = '[{"\\' * 60 + '"'  # brackets, an escaped backslash and quote, all in one string

    response = await _post_json(
        client, "/auth/register", json.dumps({"name": name, "password": password})
    )

    created = await assert_created(response)
    assert created["name"] == name


async def test_the_depth_limit_is_a_setting(data_dir: Path) -> None:
    fakes.reset()
    settings = make_settings(data_dir, max_json_depth=2)
    app = create_app(settings, daos=fakes.fake_daos(), database=fakes.FakeDatabase(settings))
    async with app.test_app():
        client = app.test_client()
        at_limit = {"name": unique_name(), "password": [1]}
        over_limit = {"name": unique_name(), "password": [[1]]}

        parsed = await _post_json(client, "/auth/register", json.dumps(at_limit))
        refused = await _post_json(client, "/auth/register", json.dumps(over_limit))

        detail = await assert_validation_error(parsed)  # parsed, then refused by the model
        assert JSON_TOO_DEEP not in {item["type"] for item in detail}
        _assert_too_deep(await assert_validation_error(refused))
    fakes.reset()


async def test_every_route_that_takes_a_json_body_refuses_deep_json(
    client: QuartClient, app: Quart
) -> None:
    """Walks the URL map, so a route added later is covered without editing this test."""
    caller = await new_caller(client)
    deep = json.dumps(_nested(200))
    checked = []
    for rule in app.url_map.iter_rules():
        path = _CONVERTER.sub(lambda _: str(uuid.uuid4()), rule.rule)
        for method in sorted(set(rule.methods or ()) & BODY_METHODS):
            response = await client.open(
                path, method=method, data=deep, headers={**JSON, **caller.headers}
            )
            detail = await assert_validation_error(response)
            assert [item["type"] for item in detail] == [JSON_TOO_DEEP], (method, rule.rule)
            checked.append(f"{method} {rule.rule}")
    assert {"POST /todos", "PATCH /todos/<uuid:todo_id>", "POST /auth/login"} <= set(checked)


# The check itself ------------------------------------------------------------------------------


def _random_value(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([1, None, "a[b{", 'q\\"[', "}}]]", "\\\\", "\u00e9["])
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f'k{i}["': _random_value(rng, depth - 1) for i in range(rng.randint(0, 3))}


def test_the_check_agrees_with_the_parsed_depth_on_random_documents() -> None:
    rng = random.Random(20261125)
    for _ in range(3000):
        value = _random_value(rng, rng.randint(0, 12))
        limit = rng.randint(1, 10)
        document = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        for form in (document, document.encode()):
            if _depth(value) > limit:
                with pytest.raises(JSONTooDeep):
                    check_nesting(form, limit)
            else:
                check_nesting(form, limit)


@pytest.mark.parametrize(
    "document",
    ["]]]" + "[" * 40, "[" * 20 + "]" * 21 + "[" * 20],
    ids=["closers-first", "one-closer-too-many"],
)
def test_the_check_reports_unbalanced_brackets_as_malformed(document: str) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        check_nesting(document, 32)


# Answering an upload that is still coming ------------------------------------------------------


class _Upload:
    """The server side of one request: body messages to hand out, what the app sent, and in
    what order the two happened."""

    def __init__(self, chunks: int, finished: bool = True) -> None:
        self.pending: list[dict[str, Any]] = [
            {"type": "http.request", "body": b"x" * CHUNK, "more_body": True} for _ in range(chunks)
        ]
        if finished:
            self.pending.append({"type": "http.request", "body": b"", "more_body": False})
        self.events: list[str] = []

    async def receive(self) -> Any:
        if not self.pending:
            await asyncio.Event().wait()  # a client that stopped sending: wait forever
        self.events.append("received")
        return self.pending.pop(0)

    async def send(self, message: Any) -> None:
        self.events.append(f"sent {message['type']} more_body={message.get('more_body', False)}")


async def _early_answer(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers 413 at once and reads the body in the background, as Quart does."""
    reader = asyncio.ensure_future(_read_forever(receive))
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    reader.cancel()


async def _read_forever(receive: Any) -> None:
    while True:
        await receive()


async def test_the_answer_is_completed_only_after_the_rest_of_the_body() -> None:
    upload = _Upload(chunks=5)

    await DrainUnreadBody(_early_answer)(
        {"type": "http", "method": "POST"}, upload.receive, upload.send
    )

    assert upload.pending == []
    last_received = len(upload.events) - 1 - upload.events[::-1].index("received")
    assert upload.events[last_received + 1 :] == ["sent http.response.body more_body=False"]


async def test_a_stalled_upload_delays_the_answer_only_briefly() -> None:
    upload = _Upload(chunks=2, finished=False)
    middleware = DrainUnreadBody(_early_answer, linger_seconds=0.05)

    async with asyncio.timeout(5):
        await middleware({"type": "http", "method": "POST"}, upload.receive, upload.send)

    assert upload.events[-1] == "sent http.response.body more_body=False"


async def test_a_request_without_a_body_method_is_passed_through() -> None:
    upload = _Upload(chunks=3)

    await DrainUnreadBody(_early_answer)(
        {"type": "http", "method": "GET"}, upload.receive, upload.send
    )

    assert upload.events[-1] == "sent http.response.body more_body=False"
    assert len(upload.pending) > 0  # nothing waited for the body
