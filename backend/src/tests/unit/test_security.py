"""Password hashing and access tokens, below the HTTP layer."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher

from app.security import (
    ALGORITHM,
    InvalidToken,
    check_password,
    hash_password,
    issue_token,
    password_hasher,
    verify_token,
)
from tests.conftest import PASSWORD, TEST_SECRET

OTHER_SECRET = "another-signing-key-that-is-long-enough-9876543210"


@pytest.fixture(scope="module")
def stored_hash() -> str:
    """One current hash of PASSWORD, shared because hashing is deliberately slow."""
    return password_hasher.hash(PASSWORD)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return claims


async def _median_seconds(run: Callable[[], Awaitable[object]], times: int = 3) -> float:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


# Passwords ----------------------------------------------------------------------------------


async def test_hash_then_check_roundtrip() -> None:
    password_hash = await hash_password(PASSWORD)

    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    check = await check_password(PASSWORD, password_hash)
    assert check.valid
    assert check.new_hash is None


async def test_the_same_password_hashes_differently_each_time(stored_hash: str) -> None:
    assert await hash_password(PASSWORD) != stored_hash


async def test_a_wrong_password_is_invalid(stored_hash: str) -> None:
    check = await check_password("not the password", stored_hash)

    assert not check.valid
    assert check.new_hash is None


async def test_an_unknown_user_is_invalid() -> None:
    check = await check_password(PASSWORD, None)

    assert not check.valid
    assert check.new_hash is None


@pytest.mark.parametrize(
    "corrupt_hash",
    [
        pytest.param("not-a-hash", id="garbage"),
        pytest.param("$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01", id="bcrypt"),
    ],
)
async def test_a_corrupt_stored_hash_is_invalid_not_an_error(corrupt_hash: str) -> None:
    check = await check_password(PASSWORD, corrupt_hash)

    assert not check.valid


async def test_a_weak_hash_gets_a_current_replacement() -> None:
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

    check = await check_password(PASSWORD, weak_hash)

    assert check.valid
    assert check.new_hash is not None
    current = password_hasher
    assert current.verify(check.new_hash, PASSWORD)
    assert not current.check_needs_rehash(check.new_hash)


async def test_a_weak_hash_with_a_wrong_password_gets_no_replacement() -> None:
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

    check = await check_password("not the password", weak_hash)

    assert not check.valid
    assert check.new_hash is None


async def test_an_unknown_user_costs_about_as_much_as_a_wrong_password(stored_hash: str) -> None:
    """Catches an implementation that skips hashing for unknown users (user enumeration)."""
    wrong_password = await _median_seconds(lambda: check_password("wrong password", stored_hash))
    unknown_user = await _median_seconds(lambda: check_password("wrong password", None))

    assert 0.3 < unknown_user / wrong_password < 3


# Tokens -------------------------------------------------------------------------------------


def test_issue_then_verify_roundtrip() -> None:
    user_id = uuid.uuid4()

    token = issue_token(user_id, TEST_SECRET, 60)

    assert verify_token(token, TEST_SECRET) == user_id


def test_an_issued_token_is_hs256_with_sub_and_exp() -> None:
    user_id = uuid.uuid4()
    before = datetime.now(UTC)

    token = issue_token(user_id, TEST_SECRET, 600)

    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM == "HS256"
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user_id)
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    assert before + timedelta(seconds=590) <= expires <= before + timedelta(seconds=610)


def test_verify_refuses_a_token_signed_with_another_key() -> None:
    token = issue_token(uuid.uuid4(), OTHER_SECRET, 60)

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


def test_verify_refuses_an_expired_token() -> None:
    token = issue_token(uuid.uuid4(), TEST_SECRET, -1)

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


def test_verify_refuses_alg_none() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


@pytest.mark.filterwarnings("ignore:The HMAC key")  # our key is short for SHA-512, on purpose
def test_verify_refuses_another_hmac_algorithm_with_the_same_key() -> None:
    token = jwt.encode(_claims(), TEST_SECRET, algorithm="HS512")

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


@pytest.mark.parametrize("subject", ["not-a-uuid", "", "1234"])
def test_verify_refuses_a_non_uuid_subject(subject: str) -> None:
    token = jwt.encode(_claims(sub=subject), TEST_SECRET, algorithm="HS256")

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


@pytest.mark.parametrize("claim", ["sub", "exp"])
def test_verify_refuses_a_token_missing_a_claim(claim: str) -> None:
    claims = _claims()
    del claims[claim]
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")

    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_verify_refuses_garbage(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(token, TEST_SECRET)


def test_invalid_token_does_not_carry_the_token_or_key() -> None:
    token = issue_token(uuid.uuid4(), OTHER_SECRET, 60)

    with pytest.raises(InvalidToken) as error:
        verify_token(token, TEST_SECRET)

    assert token not in str(error.value)
    assert TEST_SECRET not in str(error.value)
