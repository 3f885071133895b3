"""CORS: off by default (no Access-Control header at all); on, allowed origins get preflights
answered and readable responses, and any other origin gets nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from app.main import create_app
from app.settings import Settings
from tests import fakes
from tests.conftest import make_settings
from tests.unit.assertions import assert_unauthorized, new_caller

ALLOWED = "https://app.example.com"
ALSO_ALLOWED = "http://localhost:5173"
STRANGER = "https://evil.example.com"
REQUEST_HEADERS = {
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
}
EXPOSED_HEADERS = {"ETag", "Location", "Retry-After", "X-Request-ID"}


async def _client(data_dir: Path, origins: str) -> AsyncIterator[QuartClient]:
    fakes.reset()
    settings = make_settings(data_dir, cors_origins=origins)
    app = create_app(settings, daos=fakes.fake_daos(), database=fakes.FakeDatabase(settings))
    async with app.test_app():
        yield app.test_client()
    fakes.reset()


@pytest.fixture
async def cors_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    """A client of an app that allows two origins, written as an operator might."""
    async for client in _client(data_dir, f" {ALLOWED}/ , {ALSO_ALLOWED.upper()}"):
        yield client


@pytest.fixture
async def any_origin_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    async for client in _client(data_dir, "*"):
        yield client


def _preflight(origin: str, method: str = "PATCH", headers: str = "authorization") -> Any:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def _cors_headers(response: Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


# Off ------------------------------------------------------------------------------------------


async def test_off_by_default_no_response_has_cors_headers(client: QuartClient) -> None:
    preflight = await client.options("/todos", headers=_preflight(ALLOWED))
    simple = await client.get("/healthz", headers={"Origin": ALLOWED})
    error = await client.get("/me", headers={"Origin": ALLOWED})

    for response in (preflight, simple, error):
        assert _cors_headers(response) == {}
        assert "Vary" not in response.headers
    assert preflight.status_code == 200  # Quart's own OPTIONS answer, with Allow


def test_the_default_setting_is_off() -> None:
    assert Settings.model_fields["cors_origins"].default == ""


# On: allowed origins ---------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED])
async def test_a_preflight_from_an_allowed_origin_is_answered(
    cors_client: QuartClient, origin: str
) -> None:
    response = await cors_client.options(
        "/todos/3f2a9c1e-7b4d-4e2a-9c1e-7b4d4e2a9c1e",
        headers=_preflight(origin, "PATCH", "authorization, content-type, if-match"),
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert {"get", "post", "patch", "delete"} <= _listed(
        response.headers["Access-Control-Allow-Methods"]
    )
    assert _listed(response.headers["Access-Control-Allow-Headers"]) == {
        name.lower() for name in REQUEST_HEADERS
    }
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in _listed(response.headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_request_from_an_allowed_origin_can_read_the_response(
    cors_client: QuartClient,
) -> None:
    caller = await new_caller(cors_client)

    response = await cors_client.get("/me", headers={**caller.headers, "Origin": ALLOWED})

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert _listed(response.headers["Access-Control-Expose-Headers"]) == {
        name.lower() for name in EXPOSED_HEADERS
    }
    assert "origin" in _listed(response.headers["Vary"])


async def test_an_error_for_an_allowed_origin_is_readable_too(cors_client: QuartClient) -> None:
    response = await cors_client.get("/me", headers={"Origin": ALLOWED})

    await assert_unauthorized(response)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_any_origin_is_answered_with_a_wildcard(any_origin_client: QuartClient) -> None:
    preflight = await any_origin_client.options("/todos", headers=_preflight(STRANGER, "POST"))
    simple = await any_origin_client.get("/healthz", headers={"Origin": STRANGER})

    assert preflight.status_code == 204
    for response in (preflight, simple):
        assert response.headers["Access-Control-Allow-Origin"] == "*"


# On: everything else ---------------------------------------------------------------------------


async def test_an_unknown_origin_gets_no_cors_headers(cors_client: QuartClient) -> None:
    preflight = await cors_client.options("/todos", headers=_preflight(STRANGER, "POST"))
    simple = await cors_client.get("/healthz", headers={"Origin": STRANGER})

    for response in (preflight, simple):
        assert _cors_headers(response) == {}
        assert "origin" in _listed(response.headers["Vary"])
    assert preflight.status_code == 200  # routing's plain OPTIONS answer: no permission


async def test_a_similar_looking_origin_is_not_allowed(cors_client: QuartClient) -> None:
    for origin in (f"{ALLOWED}.evil.example", ALLOWED.replace("https", "http"), "null"):
        response = await cors_client.get("/healthz", headers={"Origin": origin})
        assert _cors_headers(response) == {}, origin


async def test_a_plain_options_request_is_not_a_preflight(cors_client: QuartClient) -> None:
    response = await cors_client.options("/todos", headers={"Origin": ALLOWED})

    assert response.status_code == 200
    assert "Access-Control-Allow-Methods" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_a_request_without_origin_gets_only_vary(cors_client: QuartClient) -> None:
    response = await cors_client.get("/healthz")

    assert _cors_headers(response) == {}
    assert response.headers["Vary"] == "Origin"


# The setting -----------------------------------------------------------------------------------


def test_origins_are_normalised_as_browsers_send_them() -> None:
    settings = Settings(
        cors_origins=" https://App.Example.com/ ,http://localhost:80, https://x.example:443,"
        "http://[::1]:8080,,https://app.example.com"
    )

    assert settings.cors_origin_set == {
        "https://app.example.com",
        "http://localhost",
        "https://x.example",
        "http://[::1]:8080",
    }


@pytest.mark.parametrize(
    "value",
    ["app.example.com", "https://app.example.com/path", "ftp://app.example.com", "https://"],
)
def test_a_value_that_is_not_an_origin_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(cors_origins=value)
