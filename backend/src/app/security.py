"""Password hashing (argon2id) and access tokens (JWT, HS256).

Hashing is deliberately slow, so it runs off the event loop, in a small pool of its own whose
threads run at the lowest CPU priority: a burst of logins (or a password-guessing client)
waits its turn instead of starving every other request of CPU or of memory (each hash holds
ARGON2_MEMORY_KIB while it runs, so the pool size bounds that memory too). Unknown users are
checked against a dummy hash so that they cost the same time as a wrong password and cannot
be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
T = TypeVar("T")

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
"""argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1). Stored hashes made with
other parameters still verify, and are re-hashed with these at the next successful login."""

HASHING_THREADS = 2

password_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)
_DUMMY_HASH = password_hasher.hash("dummy password used to time unknown users")


def _lowest_priority() -> None:
    """Runs in each hashing thread: on Linux a thread has its own nice value."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


_hashing = ThreadPoolExecutor(
    max_workers=HASHING_THREADS, thread_name_prefix="argon2", initializer=_lowest_priority
)


async def _off_loop(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, function, *args)


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by us with HS256."""


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    new_hash: str | None = None
    """Set when the stored hash used older parameters: store this one instead."""


async def hash_password(password: str) -> str:
    return await _off_loop(password_hasher.hash, password)


async def check_password(password: str, stored_hash: str | None) -> PasswordCheck:
    """Verify `password`; with no stored hash (unknown user) spend the same time and fail."""
    return await _off_loop(_check_password_sync, password, stored_hash)


def _check_password_sync(password: str, stored_hash: str | None) -> PasswordCheck:
    try:
        password_hasher.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(valid=False)
    if stored_hash is None:
        return PasswordCheck(valid=False)
    if password_hasher.check_needs_rehash(stored_hash):
        return PasswordCheck(valid=True, new_hash=password_hasher.hash(password))
    return PasswordCheck(valid=True)


def issue_token(user_id: uuid.UUID, key: str, ttl_seconds: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(seconds=ttl_seconds)}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_token(token: str, key: str) -> uuid.UUID:
    """The user id a valid token names; anything else raises InvalidToken.

    A client sends the same token with every request, so a verified token is remembered
    (with its expiry, checked every time): the signature is checked once, not per request.
    """
    user_id, expires_at = _verified(token, key)
    if time.time() >= expires_at:
        raise InvalidToken("ExpiredSignatureError")
    return user_id


@functools.lru_cache(maxsize=4096)
def _verified(token: str, key: str) -> tuple[uuid.UUID, float]:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]}
        )
        return uuid.UUID(claims["sub"]), float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidToken(type(error).__name__) from None
