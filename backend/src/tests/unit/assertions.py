"""Checks shared by the unit tests: the one error shape every failure must have."""

from __future__ import annotations

from typing import Any

from quart.wrappers import Response


async def assert_error(response: Response, status: int) -> Any:
    """Assert `response` is an error of `status` in the API's one shape; return its detail."""
    body = await response.get_data(as_text=True)
    assert response.status_code == status, body
    assert response.mimetype == "application/json"
    payload = await response.get_json()
    assert isinstance(payload, dict)
    assert set(payload) == {"detail"}
    assert isinstance(payload["detail"], str | list)
    return payload["detail"]


async def assert_validation_error(response: Response) -> list[dict[str, Any]]:
    """Assert a 422 whose detail is a list of `{loc, msg, type}`; return that list."""
    detail = await assert_error(response, 422)
    assert isinstance(detail, list)
    assert detail
    for item in detail:
        assert set(item) == {"loc", "msg", "type"}
        assert isinstance(item["loc"], list)
        assert isinstance(item["msg"], str)
        assert isinstance(item["type"], str)
    return detail


async def assert_unauthorized(response: Response) -> None:
    """Assert a 401 in the error shape that tells the client to send a bearer token."""
    detail = await assert_error(response, 401)
    assert isinstance(detail, str)
    assert response.headers.get("WWW-Authenticate") == "Bearer"
