"""Every failure answers `{"detail": ...}` as JSON with the right status, and leaks nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.errors import RETRY_AFTER_SECONDS
from app.main import create_app
from tests import fakes
from tests.conftest import PASSWORD, make_settings, unique_name
from tests.unit.assertions import assert_error

SECRET_MESSAGE = "secret-ish message"
SMALL_BODY_LIMIT = 1024


def _build_app(data_dir: Path, **overrides: Any) -> Quart:
    settings = make_settings(data_dir, **overrides)
    return create_app(settings, daos=fakes.fake_daos(), database=fakes.FakeDatabase(settings))


@pytest.fixture
async def small_body_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    """A client of an app that accepts request bodies of at most 1 KiB."""
    fakes.reset()
    app = _build_app(data_dir, max_body_bytes=SMALL_BODY_LIMIT)
    async with app.test_app():
        yield app.test_client()
    fakes.reset()


@pytest.fixture
async def failing_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    """A client of an app with one extra route that fails with an unexpected exception."""
    fakes.reset()
    app = _build_app(data_dir)

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError(SECRET_MESSAGE)

    async with app.test_app():
        yield app.test_client()
    fakes.reset()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{bad", id="not-json"),
        pytest.param('{"name": "abc", "password": ', id="truncated"),
        pytest.param("", id="empty"),
    ],
)
async def test_malformed_json_is_400(client: QuartClient, body: str) -> None:
    response = await client.post(
        "/auth/register", data=body, headers={"Content-Type": "application/json"}
    )

    detail = await assert_error(response, 400)
    assert isinstance(detail, str)
    assert fakes.FakeUserDAO.rows == {}


async def test_malformed_json_on_login_is_400(client: QuartClient) -> None:
    response = await client.post(
        "/auth/login", data="{bad", headers={"Content-Type": "application/json"}
    )

    detail = await assert_error(response, 400)
    assert isinstance(detail, str)


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"name": "\xff"}', id="invalid-utf8"),
        pytest.param('{"name": "é"}'.encode("utf-16"), id="utf16"),
    ],
)
async def test_json_body_that_is_not_utf8_is_400_not_500(
    client: QuartClient, path: str, body: bytes
) -> None:
    """Quart lets the UnicodeDecodeError of such a body escape (found by fuzzing)."""
    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})

    detail = await assert_error(response, 400)
    assert isinstance(detail, str)
    assert fakes.FakeUserDAO.rows == {}


async def test_unknown_route_is_404(client: QuartClient) -> None:
    response = await client.get("/no/such/route")

    detail = await assert_error(response, 404)
    assert isinstance(detail, str)


async def test_wrong_method_is_405_with_allow(client: QuartClient) -> None:
    response = await client.delete("/healthz")

    detail = await assert_error(response, 405)
    assert isinstance(detail, str)
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert "GET" in allowed
    assert "DELETE" not in allowed


async def test_get_on_a_post_route_is_405_with_allow(client: QuartClient) -> None:
    response = await client.get("/auth/register")

    await assert_error(response, 405)
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert "POST" in allowed


async def test_a_json_body_over_the_limit_is_413(small_body_client: QuartClient) -> None:
    body = {"name": unique_name(), "password": "x" * (2 * SMALL_BODY_LIMIT)}

    response = await small_body_client.post("/auth/register", json=body)

    detail = await assert_error(response, 413)
    assert isinstance(detail, str)
    assert fakes.FakeUserDAO.rows == {}


async def test_a_form_body_over_the_limit_is_413(small_body_client: QuartClient) -> None:
    form = f"grant_type=password&username=someone&password={'x' * (2 * SMALL_BODY_LIMIT)}"

    response = await small_body_client.post(
        "/auth/login", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    await assert_error(response, 413)


async def test_a_body_within_the_limit_is_accepted(small_body_client: QuartClient) -> None:
    body = json.dumps({"name": unique_name(), "password": PASSWORD})
    assert len(body) < SMALL_BODY_LIMIT

    response = await small_body_client.post(
        "/auth/register", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201


async def test_an_unexpected_exception_is_a_bare_500(failing_client: QuartClient) -> None:
    response = await failing_client.get("/boom")

    detail = await assert_error(response, 500)
    assert detail == "internal server error"
    raw = await response.get_data(as_text=True)
    assert SECRET_MESSAGE not in raw
    assert "RuntimeError" not in raw
    assert "Traceback" not in raw
    assert ".py" not in raw


async def test_the_500_still_carries_a_request_id(failing_client: QuartClient) -> None:
    response = await failing_client.get("/boom", headers={"X-Request-ID": "trace-500"})

    await assert_error(response, 500)
    assert response.headers["X-Request-ID"] == "trace-500"


async def test_an_unavailable_database_is_503_with_retry_after(
    client: QuartClient, fake_database: fakes.FakeDatabase
) -> None:
    fake_database.available = False

    response = await client.post(
        "/auth/register", json={"name": unique_name(), "password": PASSWORD}
    )

    detail = await assert_error(response, 503)
    assert isinstance(detail, str)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


async def test_an_unavailable_database_on_login_is_503_not_401(
    client: QuartClient, fake_database: fakes.FakeDatabase
) -> None:
    fake_database.available = False

    response = await client.post(
        "/auth/login", json={"username": unique_name(), "password": PASSWORD}
    )

    await assert_error(response, 503)
    assert "Retry-After" in response.headers


async def test_the_database_failure_reason_is_not_shown(
    client: QuartClient, fake_database: fakes.FakeDatabase
) -> None:
    fake_database.available = False

    response = await client.post(
        "/auth/login", json={"username": unique_name(), "password": PASSWORD}
    )

    await assert_error(response, 503)
    assert "fake database" not in await response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param(
            "POST",
            "/auth/register",
            {"data": "{bad", "headers": {"Content-Type": "application/json"}},
            400,
            id="400",
        ),
        pytest.param("GET", "/me", {}, 401, id="401"),
        pytest.param("GET", "/nowhere", {}, 404, id="404"),
        pytest.param("PUT", "/readyz", {}, 405, id="405"),
        pytest.param("POST", "/auth/register", {"json": {"name": "a"}}, 422, id="422"),
    ],
)
async def test_every_error_has_the_one_shape(
    client: QuartClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await client.open(path, method=method, **kwargs)

    await assert_error(response, status)
