"""Password hashing and access tokens, below the HTTP layer."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher, extract_parameters

from app import security
from app.security import (
    ALGORITHM,
    ARGON2_MEMORY_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    HashingStats,
    InvalidToken,
    check_password,
    hash_password,
    hashing_stats,
    issue_token,
    password_hasher,
    verify_token,
)
from tests.conftest import PASSWORD, TEST_SECRET

OTHER_SECRET = "another-signing-key-that-is-long-enough-9876543210"
THIRD_SECRET = "a-third-signing-key-that-is-long-enough-5555555555"


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


# Tokens -------------------------------------------------------------------------------------


def test_issue_then_verify_roundtrip() -> None:
    user_id = uuid.uuid4()

    token = issue_token(user_id, TEST_SECRET, 60, generation=7)

    claims = verify_token(token, TEST_SECRET)
    assert (claims.user_id, claims.generation) == (user_id, 7)


def test_two_tokens_issued_in_the_same_second_differ() -> None:
    user_id = uuid.uuid4()

    first, second = (issue_token(user_id, TEST_SECRET, 60) for _ in range(2))

    assert first != second
    assert verify_token(first, TEST_SECRET).token_id != verify_token(second, TEST_SECRET).token_id


@pytest.mark.parametrize("generation", ["1", 1.5, True, None, 2**40])
def test_a_token_whose_generation_is_not_a_small_integer_is_refused(generation: object) -> None:
    now = datetime.now(UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "gen": generation,
        "iat": now,
        "exp": now + timedelta(seconds=60),
    }

    with pytest.raises(InvalidToken):
        verify_token(jwt.encode(claims, TEST_SECRET, algorithm="HS256"), TEST_SECRET)


@pytest.mark.parametrize("missing", ["jti", "gen"])
def test_a_token_without_its_id_or_generation_is_refused(missing: str) -> None:
    now = datetime.now(UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "gen": 0,
        "iat": now,
        "exp": now + timedelta(seconds=60),
    }
    del claims[missing]

    with pytest.raises(InvalidToken):
        verify_token(jwt.encode(claims, TEST_SECRET, algorithm="HS256"), TEST_SECRET)


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


# Equal work for every failure ---------------------------------------------------------------


def _hashing_since(before: HashingStats) -> tuple[int, int, int]:
    """(current-parameter verifications, legacy verifications, hashes) since `before`."""
    return (
        hashing_stats.current_verifications - before.current_verifications,
        hashing_stats.legacy_verifications - before.legacy_verifications,
        hashing_stats.hashes - before.hashes,
    )


def test_the_dummy_hash_has_the_current_parameters() -> None:
    dummy = extract_parameters(security._DUMMY_HASH)

    assert dummy == extract_parameters(password_hasher.hash(PASSWORD))
    assert (dummy.time_cost, dummy.memory_cost, dummy.parallelism) == (
        ARGON2_TIME_COST,
        ARGON2_MEMORY_KIB,
        ARGON2_PARALLELISM,
    )
    assert not password_hasher.check_needs_rehash(security._DUMMY_HASH)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("current", id="wrong-password"),
        pytest.param(None, id="unknown-user"),
        pytest.param("not-a-hash", id="unreadable-hash"),
        pytest.param("$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01", id="bcrypt"),
    ],
)
async def test_every_failure_does_one_verification_at_the_current_parameters(
    stored_hash: str, stored: str | None
) -> None:
    """Counting the work rather than timing it: the same argon2 call with the same
    parameters takes the same time, and this cannot flake on a busy machine."""
    before = replace(hashing_stats)

    check = await check_password("wrong password", stored_hash if stored == "current" else stored)

    assert not check.valid
    assert _hashing_since(before) == (1, 0, 0)


async def test_a_success_does_the_same_verification_as_a_failure(stored_hash: str) -> None:
    before = replace(hashing_stats)

    assert (await check_password(PASSWORD, stored_hash)).valid

    assert _hashing_since(before) == (1, 0, 0)


async def test_a_legacy_hash_does_the_current_work_whether_it_fails_or_succeeds() -> None:
    """A failure verifies the dummy as well, the work a success spends re-hashing, so a
    wrong password for such a user is not cheaper than the right one."""
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

    before = replace(hashing_stats)
    assert not (await check_password("wrong password", weak_hash)).valid
    failed = _hashing_since(before)
    before = replace(hashing_stats)
    assert (await check_password(PASSWORD, weak_hash)).new_hash is not None
    succeeded = _hashing_since(before)

    assert failed == (1, 1, 0)
    assert succeeded == (0, 1, 1)


# Tokens during a key rotation ---------------------------------------------------------------


def test_verify_accepts_a_token_of_any_given_key() -> None:
    user_id = uuid.uuid4()
    keys = (TEST_SECRET, OTHER_SECRET)

    assert verify_token(issue_token(user_id, TEST_SECRET, 60), keys).user_id == user_id
    assert verify_token(issue_token(user_id, OTHER_SECRET, 60), keys).user_id == user_id


def test_verify_refuses_a_token_of_a_key_not_given() -> None:
    token = issue_token(uuid.uuid4(), THIRD_SECRET, 60)

    with pytest.raises(InvalidToken):
        verify_token(token, (TEST_SECRET, OTHER_SECRET))


def test_verify_refuses_an_expired_token_of_the_previous_key() -> None:
    token = issue_token(uuid.uuid4(), OTHER_SECRET, -1)

    with pytest.raises(InvalidToken) as error:
        verify_token(token, (TEST_SECRET, OTHER_SECRET))

    assert "Expired" in str(error.value)


def test_verify_with_no_keys_refuses() -> None:
    with pytest.raises(InvalidToken):
        verify_token(issue_token(uuid.uuid4(), TEST_SECRET, 60), ())


def test_a_token_accepted_during_a_rotation_is_refused_after_it() -> None:
    """The cache of verified tokens is keyed by the keys too: dropping the previous key
    takes effect even for a token verified a moment before."""
    token = issue_token(uuid.uuid4(), OTHER_SECRET, 60)
    verify_token(token, (TEST_SECRET, OTHER_SECRET))

    with pytest.raises(InvalidToken):
        verify_token(token, (TEST_SECRET,))


def test_hashing_rests_in_proportion_to_the_last_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paced at a share of one half, a hash of 30 ms is followed by 30 ms of rest, taken
    before the next hash starts (so the answer to the first is not held back)."""
    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(security.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(security.time, "sleep", lambda seconds: slept.append(seconds))
    pacing = security._Pacing(0.5, busy=lambda: True)

    def hash_for(seconds: float) -> str:
        clock[0] += seconds
        return "done"

    assert pacing.run(hash_for, 0.030) == "done"
    assert slept == []
    clock[0] += 0.010  # the next login arrives 10 ms later: 20 ms of rest are left
    pacing.run(hash_for, 0.030)
    assert slept == [pytest.approx(0.020)]
    clock[0] += 0.100  # long idle: no rest needed
    pacing.run(hash_for, 0.030)
    assert slept == [pytest.approx(0.020)]


def test_hashing_is_not_paced_while_no_other_request_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only logins in flight: nothing needs the CPU, so hashes follow each other at once; the
    first hash once other requests arrive does not rest either."""
    clock = [100.0]
    slept: list[float] = []
    busy = [False]
    monkeypatch.setattr(security.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(security.time, "sleep", lambda seconds: slept.append(seconds))
    pacing = security._Pacing(0.5, busy=lambda: busy[0])

    def hash_for(seconds: float) -> str:
        clock[0] += seconds
        return "done"

    for _ in range(3):
        pacing.run(hash_for, 0.030)
    busy[0] = True
    pacing.run(hash_for, 0.030)
    assert slept == []
    pacing.run(hash_for, 0.030)
    assert slept == [pytest.approx(0.030)]


async def test_freed_hash_buffers_go_back_once_the_last_pending_hash_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trimming between hashes of one burst would only make the next hash fault its buffer in
    again; after the burst nothing else would give the buffers back (app.memory)."""
    trims: list[int] = []
    monkeypatch.setattr(security, "release_free_memory", lambda: trims.append(1))
    results = await asyncio.gather(*(hash_password(PASSWORD) for _ in range(3)))
    assert len(set(results)) == 3
    assert trims == [1]
    await hash_password(PASSWORD)
    assert trims == [1, 1]
