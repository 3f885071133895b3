"""No response ever carries a password or a token back: 422 bodies drop pydantic's `input`,
and refusals (401, 429) say nothing about what was sent.

That the log output never carries them either is proven on a real server process, in
tests/live_db/test_secrets_not_logged_live.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient

from app.security import issue_token
from tests import fakes
from tests.conftest import TEST_SECRET, unique_name
from tests.unit.assertions import (
    assert_error,
    assert_unauthorized,
    assert_validation_error,
)

SECRET_PASSWORD = "Pa55word-that-must-never-be-echoed"
OTHER_SECRET = "another-signing-key-that-is-long-enough-9876543210"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "", "password": SECRET_PASSWORD}, id="bad-username"),
        pytest.param({"username": "a\x00b", "password": SECRET_PASSWORD}, id="nul-username"),
        pytest.param({"username": "someone", "password": SECRET_PASSWORD * 10}, id="too-long"),
        pytest.param({"username": "someone", "password": [SECRET_PASSWORD]}, id="not-a-string"),
        pytest.param(
            {"username": "someone", "password": "x", "pin": SECRET_PASSWORD}, id="unknown-field"
        ),
        pytest.param(
            {"username": "someone", "password": SECRET_PASSWORD, "grant_type": "implicit"},
            id="bad-grant-type",
        ),
    ],
)
async def test_a_refused_login_body_is_not_echoed(client: QuartClient, body: Any) -> None:
    response = await client.post("/auth/login", json=body)

    await assert_validation_error(response)
    assert SECRET_PASSWORD not in await response.get_data(as_text=True)


async def test_a_refused_login_form_is_not_echoed(client: QuartClient) -> None:
    form = {"grant_type": "client_credentials", "username": "x", "password": SECRET_PASSWORD}

    response = await client.post("/auth/login", form=form)

    await assert_validation_error(response)
    assert SECRET_PASSWORD not in await response.get_data(as_text=True)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "a b", "password": SECRET_PASSWORD}, id="bad-name"),
        pytest.param({"name": unique_name(), "password": SECRET_PASSWORD * 10}, id="too-long"),
        pytest.param(
            {"name": unique_name(), "password": "short", "repeat": SECRET_PASSWORD},
            id="unknown-field",
        ),
    ],
)
async def test_a_refused_registration_is_not_echoed(client: QuartClient, body: Any) -> None:
    response = await client.post("/auth/register", json=body)

    await assert_validation_error(response)
    assert SECRET_PASSWORD not in await response.get_data(as_text=True)


async def test_malformed_json_with_a_password_is_not_echoed(client: QuartClient) -> None:
    raw = json.dumps({"username": "someone", "password": SECRET_PASSWORD})[:-1]

    response = await client.post(
        "/auth/login", data=raw, headers={"Content-Type": "application/json"}
    )

    await assert_error(response, 400)
    assert SECRET_PASSWORD not in await response.get_data(as_text=True)


async def test_refused_and_limited_logins_do_not_echo_the_password(client: QuartClient) -> None:
    name = unique_name()
    statuses = []
    for _ in range(6):  # past the default limit of 5 per user name
        response = await client.post(
            "/auth/login", json={"username": name, "password": SECRET_PASSWORD}
        )
        statuses.append(response.status_code)
        assert SECRET_PASSWORD not in await response.get_data(as_text=True)
        assert SECRET_PASSWORD not in str(response.headers)

    assert statuses == [401] * 5 + [429]


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda user: issue_token(user, OTHER_SECRET, 60), id="other-key"),
        pytest.param(lambda user: issue_token(user, TEST_SECRET, -10), id="expired"),
        pytest.param(lambda user: issue_token(user, TEST_SECRET, 60)[:-3] + "abc", id="tampered"),
    ],
)
async def test_a_refused_token_is_not_echoed(client: QuartClient, make_token: Any) -> None:
    user = await fakes.FakeUserDAO.create(None, unique_name(), "unused")
    assert user is not None
    token = make_token(user.id)

    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})

    await assert_unauthorized(response)
    assert token not in await response.get_data(as_text=True)
    assert token.split(".")[2] not in str(response.headers)
