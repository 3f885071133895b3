"""Two replicas of the service (two `minor-illusion serve` processes) on one database: a token
revoked through one is refused by the other on the very next request, whichever way it was
revoked. Nothing about sessions lives in a process; a cache of tokens in one would fail here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.db import migrate
from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    Served,
    create_database,
    register_and_log_in,
    served,
    unique_name,
)

pytestmark = pytest.mark.live_db

NEW_PASSWORD = "a new passphrase for the replicas test"


@contextlib.contextmanager
def _serving_side_by_side(env: dict[str, str], folder: Path) -> Iterator[list[Served]]:
    """Two `served` processes, one worker each, started at the same time: each spends
    seconds importing the app, so starting them one after the other would double the wait."""
    starting = [
        served(env, folder / f"replica-{name}.log", "--no-migrate", "--workers", "1")
        for name in ("a", "b")
    ]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(len(starting)) as pool:
        futures = [(manager, pool.submit(manager.__enter__)) for manager in starting]
        replicas: list[Served] = []
        failure: BaseException | None = None
        for manager, future in futures:
            try:
                replicas.append(future.result())
            except BaseException as error:  # pytest.fail's Failed too: re-raised below
                failure = failure or error
            else:
                stack.push(manager.__exit__)
        if failure is not None:
            raise failure
        yield replicas


@dataclass(frozen=True)
class Replicas:
    a: httpx.Client
    b: httpx.Client


@pytest.fixture(scope="module")
def replicas(
    embedded_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Replicas A and B on a database of their own (the session's server goes away with the
    session, and the database with it)."""
    url = create_database(embedded_server_url, "minor_illusion_replicas")
    migrate.upgrade(url)
    folder = tmp_path_factory.mktemp("replicas")
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_PREVIOUS", "ROOT_PATH"}}
    env.update(DATABASE_URL=url, SECRET_KEY=TEST_SECRET, LOG_LEVEL="WARNING", DATA_DIR=str(folder))
    with (
        _serving_side_by_side(env, folder) as (a, b),
        httpx.Client(base_url=a.base_url, timeout=30) as client_a,
        httpx.Client(base_url=b.base_url, timeout=30) as client_b,
    ):
        yield Replicas(client_a, client_b)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(replica: httpx.Client, name: str, password: str = PASSWORD) -> str:
    response = replica.post("/auth/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _todo_path(replica: httpx.Client, token: str) -> str:
    """A todo of the token's user, in an organization and space of their own."""
    headers = _bearer(token)
    organization = replica.post(
        "/organizations", json={"name": unique_name("org")}, headers=headers
    )
    space = replica.post(
        "/spaces",
        json={"name": "inbox", "organization_id": organization.json()["id"]},
        headers=headers,
    )
    todo = replica.post(
        "/todos", json={"title": "t", "space_id": space.json()["id"]}, headers=headers
    )
    assert (organization.status_code, space.status_code, todo.status_code) == (201, 201, 201)
    return f"/todos/{todo.json()['id']}"


def _statuses(replica: httpx.Client, token: str, todo_path: str) -> tuple[int, int]:
    """GET /todos/{id} (checked inside its statement), then GET /me (checked first)."""
    todo = replica.get(todo_path, headers=_bearer(token))
    me = replica.get("/me", headers=_bearer(token))
    return todo.status_code, me.status_code


def test_a_logout_through_a_is_refused_by_b_at_once(replicas: Replicas) -> None:
    name = unique_name()
    token = register_and_log_in(replicas.a, name)
    other = _login(replicas.b, name)
    todo_path = _todo_path(replicas.a, token)
    assert _statuses(replicas.b, token, todo_path) == (200, 200)

    assert replicas.a.post("/auth/logout", headers=_bearer(token)).status_code == 204

    assert _statuses(replicas.b, token, todo_path) == (401, 401)
    assert _statuses(replicas.b, other, todo_path) == (200, 200)
    assert _statuses(replicas.a, other, todo_path) == (200, 200)


def test_a_logout_everywhere_through_a_is_refused_by_b_at_once(replicas: Replicas) -> None:
    name = unique_name()
    token = register_and_log_in(replicas.a, name)
    other = _login(replicas.b, name)
    todo_path = _todo_path(replicas.b, other)
    assert _statuses(replicas.b, token, todo_path) == (200, 200)

    everywhere = replicas.a.post("/auth/logout", json={"everywhere": True}, headers=_bearer(token))

    assert everywhere.status_code == 204
    assert _statuses(replicas.b, token, todo_path) == (401, 401)
    assert _statuses(replicas.b, other, todo_path) == (401, 401)


def test_a_password_change_through_b_is_seen_by_a_at_once(replicas: Replicas) -> None:
    name = unique_name()
    token = register_and_log_in(replicas.b, name)
    todo_path = _todo_path(replicas.a, token)
    assert _statuses(replicas.a, token, todo_path) == (200, 200)

    changed = replicas.b.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=_bearer(token),
    )

    assert changed.status_code == 200, changed.text
    assert _statuses(replicas.a, token, todo_path) == (401, 401)
    assert _statuses(replicas.a, changed.json()["access_token"], todo_path) == (200, 200)
