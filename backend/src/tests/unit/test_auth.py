"""Registration, login and `/me`, on FakeDAOs: what a client sees, including every refusal."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.security import issue_token, password_hasher
from tests import fakes
from tests.conftest import PASSWORD, TEST_SECRET, login, register, unique_name
from tests.unit.assertions import assert_unauthorized, assert_validation_error

OTHER_SECRET = "another-signing-key-that-is-long-enough-9876543210"


async def _login_response(client: QuartClient, name: str, password: str) -> Any:
    return await client.post("/auth/login", json={"username": name, "password": password})


async def _me(client: QuartClient, token: str) -> Any:
    return await client.get("/me", headers={"Authorization": f"Bearer {token}"})


async def _stored_user(name: str | None = None, password_hash: str = "unused") -> fakes.FakeUser:
    """A user put straight into the fake store, for tests whose point is not registration."""
    user = await fakes.FakeUserDAO.create(None, name or unique_name(), password_hash)
    assert user is not None
    return user


def _claims(subject: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + timedelta(minutes=5)}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, default=lambda value: int(value.timestamp())).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Register -----------------------------------------------------------------------------------


async def test_register_returns_the_public_user_only(client: QuartClient) -> None:
    name = unique_name()

    response = await client.post("/auth/register", json={"name": name, "password": PASSWORD})

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"id", "name", "created_at"}
    assert body["name"] == name
    uuid.UUID(body["id"])
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    raw = await response.get_data(as_text=True)
    assert PASSWORD not in raw
    assert "argon2" not in raw


@pytest.mark.parametrize(
    ("name", "password", "field"),
    [
        pytest.param("ab", PASSWORD, "name", id="name-too-short"),
        pytest.param("a" * 65, PASSWORD, "name", id="name-too-long"),
        pytest.param("a b", PASSWORD, "name", id="name-with-space"),
        pytest.param("ü-user", PASSWORD, "name", id="name-non-ascii"),
        pytest.param("abc\n", PASSWORD, "name", id="name-trailing-newline"),
        pytest.param("a/b", PASSWORD, "name", id="name-with-slash"),
        pytest.param("valid-name", "x" * 7, "password", id="password-7-chars"),
        pytest.param("valid-name", "x" * 257, "password", id="password-257-chars"),
    ],
)
async def test_register_refuses_invalid_fields(
    client: QuartClient, name: str, password: str, field: str
) -> None:
    response = await client.post("/auth/register", json={"name": name, "password": password})

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [[field]]
    assert fakes.FakeUserDAO.rows == {}


async def test_register_validation_errors_do_not_echo_the_password(
    client: QuartClient,
) -> None:
    password = "Sh0rt!x"  # 7 characters: refused

    response = await client.post(
        "/auth/register", json={"name": unique_name(), "password": password}
    )

    await assert_validation_error(response)
    assert password not in await response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("name", "password"),
    [
        pytest.param("abc", "x" * 8, id="shortest"),
        pytest.param("a" * 64, "x" * 256, id="longest"),
        pytest.param("A.b_c-9", PASSWORD, id="every-allowed-character-class"),
    ],
)
async def test_register_accepts_the_boundaries(
    client: QuartClient, name: str, password: str
) -> None:
    response = await client.post("/auth/register", json={"name": name, "password": password})

    assert response.status_code == 201, await response.get_data(as_text=True)


async def test_register_refuses_an_unknown_field(client: QuartClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"name": unique_name(), "password": PASSWORD, "is_admin": True},
    )

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [["is_admin"]]
    assert fakes.FakeUserDAO.rows == {}


async def test_register_refuses_missing_fields(client: QuartClient) -> None:
    response = await client.post("/auth/register", json={})

    detail = await assert_validation_error(response)
    assert sorted(item["loc"] for item in detail) == [["name"], ["password"]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["name", "password"], id="list"),
        pytest.param("name", id="string"),
        pytest.param(42, id="number"),
        pytest.param(None, id="null"),
    ],
)
async def test_register_refuses_a_body_that_is_not_an_object(
    client: QuartClient, body: Any
) -> None:
    response = await client.post(
        "/auth/register",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )

    await assert_validation_error(response)


# Login --------------------------------------------------------------------------------------


async def test_login_with_json_returns_a_bearer_token(client: QuartClient, app: Quart) -> None:
    name = unique_name()
    user = await register(client, name)

    response = await _login_response(client, name, PASSWORD)

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.extensions["settings"].token_ttl_seconds
    claims = jwt.decode(body["access_token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == user["id"]


async def test_login_form_with_another_grant_type_is_422(client: QuartClient) -> None:
    name = unique_name()
    await _stored_user(name)

    response = await client.post(
        "/auth/login",
        form={"grant_type": "client_credentials", "username": name, "password": PASSWORD},
    )

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [["grant_type"]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "someone"}, id="no-password"),
        pytest.param({"password": PASSWORD}, id="no-username"),
        pytest.param({"username": "", "password": PASSWORD}, id="empty-username"),
        pytest.param({"username": "someone", "password": PASSWORD, "extra": 1}, id="extra"),
        pytest.param(["someone", PASSWORD], id="list"),
    ],
)
async def test_login_refuses_a_malformed_request(client: QuartClient, body: Any) -> None:
    response = await client.post("/auth/login", json=body)

    await assert_validation_error(response)


async def test_login_upgrades_a_hash_made_with_weaker_parameters(
    client: QuartClient,
) -> None:
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    user = await _stored_user(password_hash=weak_hash)

    await login(client, user.name)

    upgraded = fakes.FakeUserDAO.rows[user.id].password_hash
    assert upgraded != weak_hash
    current = password_hasher
    assert current.verify(upgraded, PASSWORD)
    assert not current.check_needs_rehash(upgraded)


async def test_failed_login_leaves_a_weak_hash_alone(client: QuartClient) -> None:
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    user = await _stored_user(password_hash=weak_hash)

    response = await _login_response(client, user.name, "not the password")

    await assert_unauthorized(response)
    assert fakes.FakeUserDAO.rows[user.id].password_hash == weak_hash


async def test_login_with_a_current_hash_does_not_rewrite_it(client: QuartClient) -> None:
    name = unique_name()
    body = await register(client, name)
    before = fakes.FakeUserDAO.rows[uuid.UUID(body["id"])].password_hash

    await login(client, name)

    assert fakes.FakeUserDAO.rows[uuid.UUID(body["id"])].password_hash == before


# /me ----------------------------------------------------------------------------------------


async def test_me_accepts_a_lowercase_scheme(client: QuartClient) -> None:
    user = await _stored_user()
    token = issue_token(user.id, TEST_SECRET, 60)

    response = await client.get("/me", headers={"Authorization": f"bearer {token}"})

    assert response.status_code == 200
    assert (await response.get_json())["id"] == str(user.id)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("", id="empty-header"),
        pytest.param("Basic dXNlcjpwYXNzd29yZA==", id="basic"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("Bearer    ", id="bearer-blank-token"),
        pytest.param("Bearer not-a-jwt", id="garbage"),
        pytest.param("Bearer a.b.c", id="three-garbage-segments"),
        pytest.param("Token abc", id="unknown-scheme"),
    ],
)
async def test_me_refuses_a_missing_or_malformed_authorization(
    client: QuartClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/me", headers=headers)

    await assert_unauthorized(response)


async def test_me_refuses_a_token_signed_with_another_key(client: QuartClient) -> None:
    user = await _stored_user()

    response = await _me(client, issue_token(user.id, OTHER_SECRET, 60))

    await assert_unauthorized(response)


async def test_me_refuses_an_expired_token(client: QuartClient) -> None:
    user = await _stored_user()

    response = await _me(client, issue_token(user.id, TEST_SECRET, -10))

    await assert_unauthorized(response)


async def test_me_refuses_an_alg_none_token(client: QuartClient) -> None:
    user = await _stored_user()
    token = jwt.encode(_claims(str(user.id)), None, algorithm="none")

    response = await _me(client, token)

    await assert_unauthorized(response)


async def test_me_refuses_a_hand_made_alg_none_token_with_a_signature(
    client: QuartClient,
) -> None:
    """`alg: none` with a signature segment left in place, as some attacks send it."""
    user = await _stored_user()
    header = _b64({"alg": "none", "typ": "JWT"})
    payload = _b64(_claims(str(user.id)))
    real_signature = issue_token(user.id, TEST_SECRET, 60).rsplit(".", 1)[1]

    for token in (f"{header}.{payload}.", f"{header}.{payload}.{real_signature}"):
        response = await _me(client, token)
        await assert_unauthorized(response)


async def test_me_refuses_a_token_whose_payload_was_altered(client: QuartClient) -> None:
    victim = await _stored_user()
    attacker = await _stored_user()
    header, _, signature = issue_token(attacker.id, TEST_SECRET, 60).split(".")
    forged = f"{header}.{_b64(_claims(str(victim.id)))}.{signature}"

    response = await _me(client, forged)

    await assert_unauthorized(response)


@pytest.mark.filterwarnings("ignore:The HMAC key")  # our key is short for SHA-512, on purpose
async def test_me_refuses_an_hs512_token_even_with_our_key(client: QuartClient) -> None:
    user = await _stored_user()
    token = jwt.encode(_claims(str(user.id)), TEST_SECRET, algorithm="HS512")

    response = await _me(client, token)

    await assert_unauthorized(response)


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("not-a-uuid", id="word"),
        pytest.param("", id="empty"),
        pytest.param("12345", id="digits"),
    ],
)
async def test_me_refuses_a_signed_token_with_a_non_uuid_subject(
    client: QuartClient, subject: str
) -> None:
    token = jwt.encode(_claims(subject), TEST_SECRET, algorithm="HS256")

    response = await _me(client, token)

    await assert_unauthorized(response)


@pytest.mark.parametrize("claim", ["exp", "sub"])
async def test_me_refuses_a_signed_token_missing_a_claim(client: QuartClient, claim: str) -> None:
    user = await _stored_user()
    claims = _claims(str(user.id))
    del claims[claim]
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")

    response = await _me(client, token)

    await assert_unauthorized(response)


async def test_me_refuses_a_valid_token_of_a_user_that_never_existed(
    client: QuartClient,
) -> None:
    response = await _me(client, issue_token(uuid.uuid4(), TEST_SECRET, 60))

    await assert_unauthorized(response)
