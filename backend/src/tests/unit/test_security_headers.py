"""Every response carries the hardening headers: successes, every error, the OpenAPI document,
the docs page and its assets, and /metrics; the docs page's policy allows exactly what it loads,
from this origin only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart, Response
from quart.typing import TestClientProtocol as QuartClient

from app.http.docs_page import ASSET_CACHE_CONTROL
from app.http.security_headers import API_CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY
from app.main import create_app
from tests import fakes
from tests.conftest import make_settings
from tests.unit.assertions import new_caller

FIXED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _build_app(data_dir: Path, **overrides: Any) -> Quart:
    settings = make_settings(data_dir, **overrides)
    return create_app(settings, daos=fakes.fake_daos(), database=fakes.FakeDatabase(settings))


@pytest.fixture
async def extra_routes_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    """A client of an app with two extra routes: one fails unexpectedly, one sets its own
    Cache-Control."""
    fakes.reset()
    app = _build_app(data_dir)

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError("unexpected")

    @app.get("/cacheable")
    async def cacheable() -> Response:
        return Response(
            b"{}", content_type="application/json", headers={"Cache-Control": "max-age=60"}
        )

    async with app.test_app():
        yield app.test_client()
    fakes.reset()


def _assert_hardened(response: Response, *, csp: str | None = API_CONTENT_SECURITY_POLICY) -> None:
    for name, value in FIXED.items():
        assert response.headers.getlist(name) == [value], name
    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert len(response.headers.getlist("Content-Security-Policy")) == 1
    if csp is not None:
        assert response.headers["Content-Security-Policy"] == csp
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param("GET", "/healthz", {}, 200, id="200"),
        pytest.param("GET", "/openapi.json", {}, 200, id="openapi"),
        pytest.param("GET", "/metrics", {}, 200, id="metrics"),
        pytest.param(
            "POST",
            "/auth/register",
            {"data": "{bad", "headers": {"Content-Type": "application/json"}},
            400,
            id="400",
        ),
        pytest.param("GET", "/me", {}, 401, id="401"),
        pytest.param("GET", "/no/such/route", {}, 404, id="404"),
        pytest.param("DELETE", "/healthz", {}, 405, id="405"),
        pytest.param("POST", "/auth/register", {"json": {"name": "a"}}, 422, id="422"),
        pytest.param("OPTIONS", "/todos", {}, 200, id="automatic-options"),
        pytest.param("HEAD", "/healthz", {}, 200, id="head"),
    ],
)
async def test_every_response_is_hardened(
    client: QuartClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await client.open(path, method=method, **kwargs)

    assert response.status_code == status
    _assert_hardened(response)


async def test_an_authenticated_response_is_hardened(client: QuartClient) -> None:
    caller = await new_caller(client)

    response = await client.get("/me", headers=caller.headers)

    assert response.status_code == 200
    _assert_hardened(response)


async def test_an_unexpected_failure_is_hardened(extra_routes_client: QuartClient) -> None:
    response = await extra_routes_client.get("/boom")

    assert response.status_code == 500
    _assert_hardened(response)


async def test_a_handler_keeps_its_own_cache_control(extra_routes_client: QuartClient) -> None:
    response = await extra_routes_client.get("/cacheable")

    assert response.status_code == 200
    assert response.headers.getlist("Cache-Control") == ["max-age=60"]
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_the_docs_page_may_load_exactly_its_assets(client: QuartClient) -> None:
    response = await client.get("/docs")
    html = await response.get_data(as_text=True)

    assert response.status_code == 200
    _assert_hardened(response, csp=DOCS_CONTENT_SECURITY_POLICY)
    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy == {
        "default-src": {"'none'"},
        "script-src": {"'self'"},  # no inline script, no hash, no CDN
        "style-src": {"'self'"},
        "img-src": {"'self'", "data:"},  # the stylesheet's icons are data: URLs
        "connect-src": {"'self'"},  # the UI fetches /openapi.json and tries calls
        "frame-ancestors": {"'none'"},
        "base-uri": {"'none'"},
        "form-action": {"'none'"},
    }
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert linked
    for url in linked:  # same origin, so 'self' covers them
        assert url.startswith("/docs/static/"), url
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "no inline script"


async def test_the_docs_assets_are_hardened_and_keep_their_cache(client: QuartClient) -> None:
    page = await (await client.get("/docs")).get_data(as_text=True)

    for url in re.findall(r'(?:src|href)="([^"]+)"', page):
        response = await client.get(url)
        assert response.status_code == 200, url
        for name, value in FIXED.items():
            assert response.headers.getlist(name) == [value], name
        assert response.headers["Content-Security-Policy"] == API_CONTENT_SECURITY_POLICY
        assert response.headers.getlist("Cache-Control") == [ASSET_CACHE_CONTROL]


async def test_the_api_policy_allows_nothing(client: QuartClient) -> None:
    response = await client.get("/healthz")

    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == {"'none'"}
    assert policy["frame-ancestors"] == {"'none'"}


async def test_hsts_is_sent_only_when_configured(data_dir: Path) -> None:
    app = _build_app(data_dir, hsts_max_age_seconds=31_536_000)
    async with app.test_app():
        response = await app.test_client().get("/no/such/route")

    assert response.status_code == 404
    assert response.headers.getlist("Strict-Transport-Security") == ["max-age=31536000"]


def _directives(policy: str) -> dict[str, set[str]]:
    directives = {}
    for directive in policy.split(";"):
        name, *sources = directive.split()
        directives[name] = set(sources)
    return directives
