"""Checks shared by the unit tests: the one error shape every failure must have."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from tests.conftest import Caller, unique_name
from tests.conftest import new_caller as new_caller_in


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


# Resources built through the API, each call asserting that it succeeded ----------------------


async def new_caller(client: QuartClient) -> Caller:
    """A fresh user with a token, made through the app's own (fake) DAOs: see conftest."""
    app = client.app
    return await new_caller_in(app.extensions["database"], app.extensions["daos"])


async def assert_created(response: Response) -> dict[str, Any]:
    """Assert a 201 with a JSON object body; return the body."""
    text = await response.get_data(as_text=True)
    assert response.status_code == 201, text
    body = await response.get_json()
    assert isinstance(body, dict)
    return body


async def create_organization(
    client: QuartClient, caller: Caller, name: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/organizations", json={"name": name or unique_name("org")}, headers=caller.headers
    )
    return await assert_created(response)


async def add_member(
    client: QuartClient,
    owner: Caller,
    organization_id: str,
    member: Caller,
    role: str = "member",
) -> dict[str, Any]:
    response = await client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": member.name, "role": role},
        headers=owner.headers,
    )
    return await assert_created(response)


async def create_space(
    client: QuartClient, caller: Caller, organization_id: str, name: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/spaces",
        json={"name": name or unique_name("space"), "organization_id": organization_id},
        headers=caller.headers,
    )
    return await assert_created(response)


async def create_todo(
    client: QuartClient, caller: Caller, space_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"title": unique_name("todo"), "space_id": space_id, **fields}
    return await assert_created(await client.post("/todos", json=body, headers=caller.headers))


@dataclass(frozen=True)
class Workspace:
    """An organization owned by `owner`, with one space in it."""

    owner: Caller
    organization: dict[str, Any]
    space: dict[str, Any]


async def new_workspace(client: QuartClient, owner: Caller | None = None) -> Workspace:
    owner = owner or await new_caller(client)
    organization = await create_organization(client, owner)
    space = await create_space(client, owner, organization["id"])
    return Workspace(owner=owner, organization=organization, space=space)


async def collect_pages(
    client: QuartClient, caller: Caller, path: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Follow `next_cursor` from the first page to the last; return every page's body."""
    pages: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        response = await client.get(path, query_string=query, headers=caller.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        page = await response.get_json()
        assert set(page) == {"items", "next_cursor"}
        pages.append(page)
        if page["next_cursor"] is None:
            return pages
        assert len(pages) < 1000, "next_cursor never ends"
        query = {**params, "cursor": page["next_cursor"]}


def assert_retry_after_counts_from(retry_after: int, first_failure: float, window: int) -> None:
    """Retry-After counts the window from the oldest failure that makes up a login limit, so
    it is less than the window by as long as the failures took, which on a busy machine is
    seconds (`first_failure`: time.monotonic() before the first of them)."""
    elapsed = time.monotonic() - first_failure
    assert window - elapsed - 1 <= retry_after <= window
