"""Password hashing (argon2id) and access tokens (JWT, HS256).

Hashing is deliberately slow, so it runs off the event loop, in a pool of its own whose
threads run at the lowest CPU priority. While other requests are in flight it is paced
(HASHING_SHARE): a burst of logins (or a password-guessing client) waits its turn instead of
starving every other request of CPU or of memory (each hash holds ARGON2_MEMORY_KIB while it
runs; one at a time bounds that). While only logins are in flight, they get every core.

Every failed check does the same argon2 work, so response times do not tell user names apart:
an unknown user (or one whose stored hash cannot be read) is checked against a dummy hash made
with the current parameters, exactly like a wrong password against a current hash. A stored
hash made with older (cheaper) parameters costs what those cost, and a success then re-hashes
at the current ones; a failure verifies the dummy instead, so it too costs the current work
plus the older parameters' small share, not noticeably less than an unknown user.
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.http.traffic import traffic
from app.memory import release_free_memory

ALGORITHM = "HS256"
T = TypeVar("T")

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
"""argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1). Stored hashes made with
other parameters still verify, and are re-hashed with these at the next successful login."""

_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
HASHING_THREADS = min(_CPUS or 1, 4)
HASHING_SHARE = 0.5
"""While other requests are in flight, at most one hash at a time and the hashing busy at most
half the time (20-30 logins a second per worker here). argon2 is memory-hard: a hash
running on the other core slows the event loop's own work through the shared caches and
memory bus whatever its priority (measured: with hashing unpaced, GET /todos/{id} kept
0.56-0.65 of its throughput while 4 clients logged in; paced at half, 0.82-0.89). Logins queue
instead; they are meant to be slow. While the worker answers nothing but logins and
registrations, nothing needs the CPU: hashes run unpaced on one thread per core (each holds
ARGON2_MEMORY_KIB while it runs, so at most four), 80-86 logins a second on 2 cores here."""

password_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)
_DUMMY_HASH = password_hasher.hash("dummy password used to time unknown users")
"""Made by `password_hasher` itself, so it always has the current parameters."""


@dataclass
class HashingStats:
    """The argon2 work done, by kind: lets tests prove that every way a login fails costs the
    same hashing, without timing it."""

    current_verifications: int = 0
    """Of a hash with the current parameters: a stored one or the dummy."""
    legacy_verifications: int = 0
    """Of a stored hash made with other parameters."""
    hashes: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def count(self, *, current: int = 0, legacy: int = 0, hashes: int = 0) -> None:
        with self._lock:  # written by the hashing thread, read by tests
            self.current_verifications += current
            self.legacy_verifications += legacy
            self.hashes += hashes


hashing_stats = HashingStats()


def _lowest_priority() -> None:
    """Runs in each hashing thread: on Linux a thread has its own nice value."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


_hashing = ThreadPoolExecutor(
    max_workers=HASHING_THREADS, thread_name_prefix="argon2", initializer=_lowest_priority
)


class _Pacing:
    """Runs hashes unpaced while `busy()` is false; otherwise one at a time, keeping the
    hashing busy for at most `share` of the time by resting before a hash in proportion to how
    long the previous paced one took."""

    def __init__(self, share: float, busy: Callable[[], bool]) -> None:
        self.share = share
        self.busy = busy
        self._one_at_a_time = threading.Lock()
        self._next_start = 0.0

    def run(self, function: Callable[..., T], *args: object) -> T:
        if not self.busy():
            return function(*args)
        with self._one_at_a_time:
            rest = self._next_start - time.monotonic()
            if rest > 0:
                time.sleep(rest)
            started = time.monotonic()
            try:
                return function(*args)
            finally:
                finished = time.monotonic()
                self._next_start = finished + (finished - started) * (1 - self.share) / self.share


_pacing = _Pacing(HASHING_SHARE, traffic.others_waiting)


_hashes_pending = 0
"""Hashes submitted and not yet finished (or cancelled before they started)."""
_pending_lock = threading.Lock()


def _hash_done(_: Future[Any]) -> None:
    """Once no hash is pending, the freed buffers go back to the system (app.memory)."""
    global _hashes_pending
    with _pending_lock:
        _hashes_pending -= 1
        idle = _hashes_pending == 0
    if idle:
        release_free_memory()


async def _off_loop(function: Callable[..., T], *args: object) -> T:
    global _hashes_pending
    with _pending_lock:
        _hashes_pending += 1
    submitted = _hashing.submit(_pacing.run, function, *args)
    submitted.add_done_callback(_hash_done)
    return await asyncio.wrap_future(submitted)


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by us with HS256."""


@dataclass(frozen=True)
class PasswordCheck:
    valid: bool
    new_hash: str | None = None
    """Set when the stored hash used older parameters: store this one instead."""


async def hash_password(password: str) -> str:
    return await _off_loop(_hash_sync, password)


def _hash_sync(password: str) -> str:
    password_hash = password_hasher.hash(password)
    hashing_stats.count(hashes=1)
    return password_hash


async def check_password(password: str, stored_hash: str | None) -> PasswordCheck:
    """Verify `password`; with no stored hash (unknown user) spend the same work and fail."""
    return await _off_loop(_check_password_sync, password, stored_hash)


def _check_password_sync(password: str, stored_hash: str | None) -> PasswordCheck:
    try:
        legacy = stored_hash is not None and password_hasher.check_needs_rehash(stored_hash)
        valid = _verify(stored_hash or _DUMMY_HASH, password, legacy=legacy)
    except InvalidHashError:  # unreadable: fails, and must not fail faster than a real check
        _verify(_DUMMY_HASH, password, legacy=False)
        return PasswordCheck(valid=False)
    if stored_hash is None:
        return PasswordCheck(valid=False)
    if not legacy:
        return PasswordCheck(valid=valid)
    if valid:
        return PasswordCheck(valid=True, new_hash=_hash_sync(password))
    _verify(_DUMMY_HASH, password, legacy=False)  # the current-parameter work of a re-hash
    return PasswordCheck(valid=False)


def _verify(password_hash: str, password: str, *, legacy: bool) -> bool:
    """Whether `password` matches; InvalidHashError (raised before any hashing) propagates."""
    try:
        password_hasher.verify(password_hash, password)
        matched = True
    except VerificationError:
        matched = False
    hashing_stats.count(current=0 if legacy else 1, legacy=1 if legacy else 0)
    return matched


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: whose it is, its own id, the user's token generation when it
    was issued (see app.models.sessions), and when it expires."""

    user_id: uuid.UUID
    token_id: uuid.UUID
    generation: int
    expires_at: float


def issue_token(user_id: uuid.UUID, key: str, ttl_seconds: int, generation: int = 0) -> str:
    """A new token; each has its own id (`jti`), so two logins in one second get two tokens
    that can be logged out one at a time."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "jti": str(uuid.uuid4()),
        "gen": generation,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_token(token: str, keys: str | tuple[str, ...]) -> TokenClaims:
    """What a valid token says; anything else raises InvalidToken. Whether it was revoked
    since is the database's to say (app.models.sessions).

    `keys` is the signing key, or the keys accepted during a rotation (`verification_keys`
    of the settings), tried in order. A client sends the same token with every request, so
    a verified token is remembered (with its expiry, checked every time): the signature is
    checked once, not per request.
    """
    claims = _verified(token, keys)
    if time.time() >= claims.expires_at:
        raise InvalidToken("ExpiredSignatureError")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(token: str, keys: str | tuple[str, ...]) -> TokenClaims:
    for key in (keys,) if isinstance(keys, str) else keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "iat", "jti", "gen"]},
            )
            generation = claims["gen"]
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise ValueError("gen must be an integer")
            if not -(2**31) <= generation < 2**31:
                raise ValueError("gen out of range")
            return TokenClaims(
                uuid.UUID(claims["sub"]),
                uuid.UUID(claims["jti"]),
                generation,
                float(claims["exp"]),
            )
        except jwt.InvalidSignatureError:
            continue  # PyJWT checks the signature before the claims: try the next key
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
            raise InvalidToken(type(error).__name__) from None
    raise InvalidToken("InvalidSignatureError")
