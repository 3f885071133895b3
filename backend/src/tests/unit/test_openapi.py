"""The OpenAPI document covers every route, and every non-public route refuses anonymous calls.

The meta-tests walk `app.url_map`, so a route added later is checked without editing this file:
one that forgets `requires_auth` fails `test_only_the_public_routes_skip_authentication`.
"""

from __future__ import annotations

import re
import uuid

from quart import Quart
from quart.typing import TestClientProtocol as QuartClient
from werkzeug.routing import Rule

from app.api.context import BEARER_SCHEME, REQUIRES_AUTH_ATTRIBUTE
from tests.unit.assertions import assert_unauthorized

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/auth/register", "/auth/login", "/openapi.json", "/docs", "/metrics"}
)
"""Routes anyone may call; every other route must be decorated with `requires_auth`.
(/metrics takes its own token when METRICS_TOKEN is set.)"""

STATIC_ENDPOINT = "static"
DOCUMENTATION_ENDPOINTS = frozenset({"openapi", "swagger_ui", "redoc_ui", "scalar_ui"})
"""quart-schema's own routes, which serve the document rather than appear in it."""
OPERATOR_ENDPOINTS = frozenset({"metrics"})
"""Routes for the operator's tools, not API clients, left out of the document."""

AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def _rules(app: Quart) -> list[Rule]:
    return list(app.url_map.iter_rules())


def _requires_auth(app: Quart, rule: Rule) -> bool:
    return bool(getattr(app.view_functions[rule.endpoint], REQUIRES_AUTH_ATTRIBUTE, False))


def _openapi_path(rule: Rule) -> str:
    """`/todos/<uuid:todo_id>` as OpenAPI writes it: `/todos/{todo_id}`."""
    return _CONVERTER.sub(r"{\1}", rule.rule)


def _methods(rule: Rule) -> set[str]:
    return set(rule.methods or ()) - AUTOMATIC_METHODS


def _documented_rules(app: Quart) -> list[Rule]:
    ignored = DOCUMENTATION_ENDPOINTS | OPERATOR_ENDPOINTS | {STATIC_ENDPOINT}
    return [rule for rule in _rules(app) if rule.endpoint not in ignored]


async def _openapi(client: QuartClient) -> dict[str, object]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert isinstance(spec, dict)
    return spec


async def test_openapi_is_version_3(client: QuartClient) -> None:
    spec = await _openapi(client)

    assert str(spec["openapi"]).startswith("3.")
    assert isinstance(spec["info"], dict)
    assert spec["info"]["title"]


async def test_openapi_documents_every_route(client: QuartClient, app: Quart) -> None:
    spec = await _openapi(client)
    paths = spec["paths"]
    assert isinstance(paths, dict)

    expected = {_openapi_path(rule) for rule in _documented_rules(app)}
    assert set(paths) == expected
    for rule in _documented_rules(app):
        documented = {method.upper() for method in paths[_openapi_path(rule)]}
        assert _methods(rule) <= documented, rule.rule


async def test_openapi_documents_the_bearer_scheme_on_protected_routes(
    client: QuartClient, app: Quart
) -> None:
    spec = await _openapi(client)
    components = spec["components"]
    paths = spec["paths"]
    assert isinstance(components, dict)
    assert isinstance(paths, dict)

    scheme = components["securitySchemes"][BEARER_SCHEME]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    for rule in _documented_rules(app):
        for method in _methods(rule):
            operation = paths[_openapi_path(rule)][method.lower()]
            secured = {BEARER_SCHEME} <= {
                name for requirement in operation.get("security", []) for name in requirement
            }
            assert secured == _requires_auth(app, rule), f"{method} {rule.rule}"


async def test_docs_page_is_html(client: QuartClient) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "openapi.json" in await response.get_data(as_text=True)


async def test_every_protected_route_refuses_a_request_without_a_token(
    client: QuartClient, app: Quart
) -> None:
    protected = [rule for rule in _rules(app) if _requires_auth(app, rule)]
    assert "/me" in {rule.rule for rule in protected}  # the walk below is not vacuous

    refused = []
    for rule in protected:
        path = _CONVERTER.sub(lambda _: str(uuid.uuid4()), rule.rule)
        for method in sorted(_methods(rule)):
            response = await client.open(path, method=method)
            await assert_unauthorized(response)
            refused.append(f"{method} {rule.rule}")
    assert refused


async def test_only_the_public_routes_skip_authentication(app: Quart) -> None:
    unprotected = {
        rule.rule
        for rule in _rules(app)
        if not _requires_auth(app, rule) and rule.endpoint != STATIC_ENDPOINT
    }

    assert unprotected == PUBLIC_PATHS
