"""Password hashing (argon2id) and access tokens (JWT, HS256).

Hashing is deliberately slow, so it runs in a worker thread: one login must not stall every
other request on the event loop. Unknown users are checked against a dummy hash so that they
cost the same time as a wrong password and cannot be told apart.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("dummy password used to time unknown users")


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by us with HS256."""


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    new_hash: str | None = None
    """Set when the stored hash used older parameters: store this one instead."""


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def check_password(password: str, stored_hash: str | None) -> PasswordCheck:
    """Verify `password`; with no stored hash (unknown user) spend the same time and fail."""
    return await asyncio.to_thread(_check_password_sync, password, stored_hash)


def _check_password_sync(password: str, stored_hash: str | None) -> PasswordCheck:
    try:
        _hasher.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(valid=False)
    if stored_hash is None:
        return PasswordCheck(valid=False)
    if _hasher.check_needs_rehash(stored_hash):
        return PasswordCheck(valid=True, new_hash=_hasher.hash(password))
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
