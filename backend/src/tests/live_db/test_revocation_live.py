"""Revoked tokens on a real database: after a logout, a logout everywhere or a password change,
the tokens it names are refused by every authenticated route, change nothing, and replay
nothing; the caller's other tokens keep working. Revocations are purged once the token has
expired anyway, and the hot routes still check them inside their one statement.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy import func, update

from app.api.context import REQUIRES_AUTH_ATTRIBUTE
from app.db.database import Database
from app.db.executor import sent_statements
from app.models import BaseDAO, RevokedTokenDAO
from app.security import issue_token
from tests.conftest import (
    PASSWORD,
    Caller,
    Team,
    create_todo,
    login,
    new_caller,
    register,
    todo_count,
    unique_name,
)
from tests.sql import fetch

pytestmark = pytest.mark.live_db

NEW_PASSWORD = "a brand new passphrase for the revocation tests"
_PLACEHOLDER = re.compile(r"<[^<>]+>|\{[^{}]+\}")
"""A path parameter, as Quart (`<uuid:todo_id>`) or OpenAPI (`{todo_id}`) writes it."""


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _second_token(database: Database, caller: Caller) -> dict[str, str]:
    """Another token of `caller`, as a second login would issue it (its own `jti`)."""
    return _bearer(issue_token(caller.id, database.settings.signing_key(), 900))


async def _send(
    client: Client, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> Response:
    """A request with `body` as JSON, or without a body at all when it is None."""
    as_json: dict[str, Any] = {} if body is None else {"json": body}
    return await client.open(path, method=method, headers=headers, **as_json)


async def _snapshot(database: Database) -> dict[str, list[str]]:
    """Every row of every app table, in a comparable form: what "nothing changed" means."""
    tables: dict[str, list[str]] = {}
    for table in BaseDAO.metadata.sorted_tables:
        rows = await fetch(database, table.select())
        tables[table.name] = sorted(repr(tuple(row.values())) for row in rows)
    return tables


# Every authenticated route refuses a revoked token ------------------------------------------


@dataclass(frozen=True)
class Account:
    """A registered user with two tokens from two logins, owner of an organization that has
    another member, a space and a todo."""

    name: str
    first: str
    second: str
    member: Caller
    stranger: Caller
    organization_id: str
    space_id: str
    todo_id: str


@pytest.fixture
async def account(live_client: Client, live_database: Database) -> Account:
    name = unique_name()
    await register(live_client, name)
    first, second = await login(live_client, name), await login(live_client, name)
    member, stranger = await new_caller(live_database), await new_caller(live_database)
    headers = _bearer(second)
    organization = await live_client.post(
        "/organizations", json={"name": unique_name("org")}, headers=headers
    )
    organization_id = (await organization.get_json())["id"]
    added = await live_client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": member.name},
        headers=headers,
    )
    space = await live_client.post(
        "/spaces", json={"name": "inbox", "organization_id": organization_id}, headers=headers
    )
    assert (organization.status_code, added.status_code, space.status_code) == (201, 201, 201)
    space_id = (await space.get_json())["id"]
    todo = await live_client.post(
        "/todos", json={"title": "keep me", "space_id": space_id}, headers=headers
    )
    assert todo.status_code == 201
    todo_id = (await todo.get_json())["id"]
    return Account(name, first, second, member, stranger, organization_id, space_id, todo_id)


def _authenticated_requests(
    account: Account,
) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(method, route, path, body) for every authenticated route: each one, with a valid
    token, would succeed and (for the writes) change something."""
    organization = f"/organizations/{account.organization_id}"
    member = f"{organization}/members/{account.member.id}"
    space, todo = f"/spaces/{account.space_id}", f"/todos/{account.todo_id}"
    organization_route = "/organizations/{organization_id}"
    member_route = organization_route + "/members/{member_id}"
    return [
        ("GET", "/me", "/me", None),
        ("POST", "/auth/logout", "/auth/logout", None),
        ("POST", "/auth/logout", "/auth/logout", {"everywhere": True}),
        (
            "POST",
            "/me/password",
            "/me/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        ),
        ("POST", "/me/deletion", "/me/deletion", {"password": PASSWORD}),
        ("GET", "/organizations", "/organizations", None),
        ("POST", "/organizations", "/organizations", {"name": unique_name("org")}),
        ("GET", organization_route, organization, None),
        ("PATCH", organization_route, organization, {"name": unique_name("renamed")}),
        ("GET", organization_route + "/members", f"{organization}/members", None),
        (
            "POST",
            organization_route + "/members",
            f"{organization}/members",
            {"user_name": account.stranger.name},
        ),
        ("PATCH", member_route, member, {"role": "owner"}),
        ("DELETE", member_route, member, None),
        ("GET", organization_route + "/changes", f"{organization}/changes", None),
        ("GET", organization_route + "/events", f"{organization}/events", None),
        ("GET", "/spaces", "/spaces", None),
        ("GET", "/spaces", f"/spaces?organization_id={account.organization_id}", None),
        (
            "POST",
            "/spaces",
            "/spaces",
            {"name": "later", "organization_id": account.organization_id},
        ),
        ("GET", "/spaces/{space_id}", space, None),
        ("PATCH", "/spaces/{space_id}", space, {"name": "renamed"}),
        ("GET", "/todos", "/todos", None),
        ("GET", "/todos", f"/todos?space_id={account.space_id}", None),
        ("POST", "/todos", "/todos", {"title": "after", "space_id": account.space_id}),
        ("GET", "/todos/{todo_id}", todo, None),
        ("PATCH", "/todos/{todo_id}", todo, {"done": True}),
        ("DELETE", "/todos/{todo_id}", todo, None),
        ("DELETE", "/spaces/{space_id}", space, None),
        ("DELETE", organization_route, organization, None),
    ]


def _route(path: str) -> str:
    """A route without the names of its parameters, which may change freely."""
    return _PLACEHOLDER.sub("{}", path)


def _authenticated_routes(app: Quart) -> set[tuple[str, str]]:
    """(method, route) of every route marked by `requires_auth`, as the app has them."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], REQUIRES_AUTH_ATTRIBUTE, False):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                routes.add((method, _route(rule.rule)))
    return routes


Revocation = Callable[[Client, Account], Awaitable[tuple[list[str], list[str]]]]


async def _logout(client: Client, account: Account) -> tuple[list[str], list[str]]:
    response = await client.post("/auth/logout", headers=_bearer(account.first))
    assert response.status_code == 204, await response.get_data(as_text=True)
    return [account.first], [account.second]


async def _logout_everywhere(client: Client, account: Account) -> tuple[list[str], list[str]]:
    response = await client.post(
        "/auth/logout", json={"everywhere": True}, headers=_bearer(account.first)
    )
    assert response.status_code == 204, await response.get_data(as_text=True)
    return [account.first, account.second], [await login(client, account.name)]


async def _password_change(client: Client, account: Account) -> tuple[list[str], list[str]]:
    response = await client.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=_bearer(account.first),
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    new_token = (await response.get_json())["access_token"]
    return [account.first, account.second], [new_token]


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(_logout, id="logout"),
        pytest.param(_logout_everywhere, id="logout-everywhere"),
        pytest.param(_password_change, id="password-change"),
    ],
)
async def test_revoked_tokens_are_refused_by_every_route_and_change_nothing(
    live_app: Quart,
    live_client: Client,
    live_database: Database,
    account: Account,
    revoke: Revocation,
) -> None:
    """Logout refuses the token presented, logout everywhere every token issued so far (a
    login afterwards works), a password change every token issued before it (the new one
    from its response works)."""
    requests = _authenticated_requests(account)
    covered = {(method, _route(route)) for method, route, _, _ in requests}
    assert covered == _authenticated_routes(live_app)

    revoked, valid = await revoke(live_client, account)
    before = await _snapshot(live_database)

    for token in revoked:
        for method, _, path, body in requests:
            response = await _send(live_client, method, path, body, _bearer(token))
            answer = await response.get_data(as_text=True)
            assert response.status_code == 401, (method, path, answer)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert set(await response.get_json()) == {"detail"}

    assert await _snapshot(live_database) == before
    for token in valid:
        me = await live_client.get("/me", headers=_bearer(token))
        assert me.status_code == 200
        assert [o["id"] for o in (await me.get_json())["organizations"]] == [
            account.organization_id
        ]
        todo = f"/todos/{account.todo_id}"
        assert (await live_client.get(todo, headers=_bearer(token))).status_code == 200
        patched = await live_client.patch(todo, json={"done": True}, headers=_bearer(token))
        assert patched.status_code == 200


async def test_a_replayed_post_with_a_revoked_token_is_401_not_the_stored_response(
    live_client: Client, live_database: Database, team: Team
) -> None:
    owner = team.owner
    body = {"title": "once", "space_id": team.space_id}
    first = await live_client.post("/todos", json=body, headers=owner.with_key("k-1"))
    assert first.status_code == 201
    logout = await live_client.post("/auth/logout", headers=owner.headers)
    assert logout.status_code == 204

    replay = await live_client.post("/todos", json=body, headers=owner.with_key("k-1"))
    other_token = {**_second_token(live_database, owner), "Idempotency-Key": "k-1"}
    replay_with_a_valid_token = await live_client.post("/todos", json=body, headers=other_token)

    assert replay.status_code == 401
    assert "id" not in await replay.get_json()
    assert replay_with_a_valid_token.status_code == 201
    assert replay_with_a_valid_token.headers["Idempotent-Replayed"] == "true"
    assert (await replay_with_a_valid_token.get_json())["id"] == (await first.get_json())["id"]
    assert await todo_count(live_database, team.space_id) == 1


# Each login has its own token ---------------------------------------------------------------


async def test_two_logins_in_one_second_get_two_tokens_logged_out_one_at_a_time(
    live_client: Client,
) -> None:
    name = unique_name()
    await register(live_client, name)
    for _ in range(5):  # two logins that straddle a second boundary are tried again
        tokens = await asyncio.gather(login(live_client, name), login(live_client, name))
        claims = [jwt.decode(token, options={"verify_signature": False}) for token in tokens]
        if claims[0]["iat"] == claims[1]["iat"]:
            break
    else:
        pytest.fail("no two logins within one second")
    kept, dropped = tokens

    logout = await live_client.post("/auth/logout", headers=_bearer(dropped))

    assert kept != dropped
    assert claims[0]["jti"] != claims[1]["jti"]
    assert logout.status_code == 204
    assert (await live_client.get("/me", headers=_bearer(dropped))).status_code == 401
    assert (await live_client.get("/me", headers=_bearer(kept))).status_code == 200


# Revocations are kept only while they matter ------------------------------------------------


async def _revoked_rows(database: Database) -> set[uuid.UUID]:
    table = RevokedTokenDAO.__table__
    return {row.user_id for row in await fetch(database, table.select())}


async def test_purge_removes_the_revocations_of_expired_tokens_only(
    live_client: Client, live_database: Database
) -> None:
    callers = [await new_caller(live_database) for _ in range(3)]
    for caller in callers:
        assert (await live_client.post("/auth/logout", headers=caller.headers)).status_code == 204
    kept = callers[2]
    backdate = (
        update(RevokedTokenDAO)
        .where(RevokedTokenDAO.user_id != kept.id)
        .values(expires_at=func.now() - timedelta(seconds=1))
    )
    await fetch(live_database, backdate)

    purged = [
        await live_database.run(lambda x: RevokedTokenDAO.purge_expired(x, batch=1))
        for _ in range(3)
    ]

    assert purged == [1, 1, 0]
    assert await _revoked_rows(live_database) == {kept.id}
    assert (await live_client.get("/me", headers=kept.headers)).status_code == 401


# The hot routes check revocation inside their one statement ---------------------------------


@pytest.fixture
def transactions(live_database: Database, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every unit of work the app runs, as its `single_statement` flag: True is a statement
    sent as its own transaction, without BEGIN and COMMIT (which `sent_statements` does not
    see)."""
    runs: list[bool] = []
    real_run = live_database.run

    async def run(work: Any, *, single_statement: bool = False) -> Any:
        runs.append(single_statement)
        return await real_run(work, single_statement=single_statement)

    monkeypatch.setattr(live_database, "run", run)
    return runs


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/todos/{todo_id}", 200),
        ("GET", "/todos", 200),
        ("POST", "/todos", 201),
        ("PATCH", "/todos/{todo_id}", 200),
    ],
)
async def test_a_hot_route_is_one_statement_that_checks_the_token(
    live_client: Client,
    team: Team,
    transactions: list[bool],
    method: str,
    path: str,
    status: int,
) -> None:
    owner = team.owner
    todo = await create_todo(live_client, owner, team.space_id)
    url = path.format(todo_id=todo["id"])
    body: dict[str, dict[str, Any]] = {
        "POST": {"title": "hot", "space_id": team.space_id},
        "PATCH": {"done": True},
    }
    transactions.clear()

    with sent_statements() as sent:
        valid = await _send(live_client, method, url, body.get(method), owner.headers)
    assert valid.status_code == status, await valid.get_data(as_text=True)
    assert transactions == [True]
    [(sql, _)] = sent
    assert "revoked_tokens" in sql
    # Logout everywhere and password changes are refused through revoked_tokens too (the
    # retired generation's row): the hot statement never reads the users table.
    assert re.search(r"\busers\b", sql) is None, sql

    assert (await live_client.post("/auth/logout", headers=owner.headers)).status_code == 204
    revoked = await _send(live_client, method, url, body.get(method), owner.headers)
    assert revoked.status_code == 401, await revoked.get_data(as_text=True)
