"""`X-Request-ID`: a sane incoming id is echoed, anything else is replaced by a generated one."""

from __future__ import annotations

import re

import pytest
from quart.typing import TestClientProtocol as QuartClient

REQUEST_ID = "X-Request-ID"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("3f2a9c1e-7b4d-4e2a-9c1e-7b4d4e2a9c1e", id="uuid"),
        pytest.param("req.42:edge_7-A", id="every-allowed-character-class"),
        pytest.param("x", id="one-character"),
        pytest.param("a" * 128, id="128-characters"),
    ],
)
async def test_a_sane_request_id_is_echoed(client: QuartClient, incoming: str) -> None:
    response = await client.get("/healthz", headers={REQUEST_ID: incoming})

    assert response.status_code == 200
    assert response.headers[REQUEST_ID] == incoming


async def test_a_missing_request_id_is_generated(client: QuartClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")

    assert GENERATED_ID.fullmatch(first.headers[REQUEST_ID])
    assert GENERATED_ID.fullmatch(second.headers[REQUEST_ID])
    assert first.headers[REQUEST_ID] != second.headers[REQUEST_ID]


# A newline cannot be tested here: werkzeug refuses header values containing CR or LF when the
# test client builds the request, as HTTP servers do before a request reaches the app.
@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("a" * 500, id="500-characters"),
        pytest.param("a" * 129, id="129-characters"),
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param("<script>", id="markup"),
        pytest.param("a;b=c", id="semicolon"),
        pytest.param("", id="empty"),
    ],
)
async def test_an_insane_request_id_is_replaced(client: QuartClient, incoming: str) -> None:
    response = await client.get("/healthz", headers={REQUEST_ID: incoming})

    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers[REQUEST_ID])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/no/such/route", 404, id="404"),
        pytest.param("DELETE", "/healthz", 405, id="405"),
        pytest.param("GET", "/me", 401, id="401"),
    ],
)
async def test_error_responses_carry_the_request_id(
    client: QuartClient, method: str, path: str, status: int
) -> None:
    echoed = await client.open(path, method=method, headers={REQUEST_ID: "trace-error-1"})
    generated = await client.open(path, method=method)

    assert echoed.status_code == status
    assert echoed.headers[REQUEST_ID] == "trace-error-1"
    assert generated.status_code == status
    assert GENERATED_ID.fullmatch(generated.headers[REQUEST_ID])
