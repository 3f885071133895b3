"""The engine lifecycle and the one scope every unit of work runs in.

One pooled engine per process, created when the app starts serving and disposed when it stops.
A unit of work is an async callable taking an `Executor`. `Database.run` checks a connection
out of the engine's pool, runs the unit in a transaction (or, for a unit that sends one
statement, as that statement's own implicit transaction), and re-runs it whole when the
database reports a serialization failure (SQLSTATE 40001), which CockroachDB does under
contention for any transaction and PostgreSQL does at SERIALIZABLE. Because a retry re-runs the
callable, it must not have side effects outside the database.

The pool is SQLAlchemy's (size, overflow, timeouts, pre-ping, TLS and server settings in one
place); the statements go straight to the asyncpg connection it holds (see app.db.executor).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypeVar

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db.executor import Executor
from app.db.failures import (
    CONNECTION_LOST,
    SERIALIZATION_FAILURE,
    DatabaseBusy,
    DatabaseUnavailable,
    leaves_connection_usable,
    sqlstate_of,
    translated,
)
from app.db.urls import asyncpg_ssl_context, is_cockroachdb, normalise
from app.settings import ConfigError, Settings

T = TypeVar("T")
Work: TypeAlias = Callable[[Executor], Awaitable[T]]

AsyncpgIsolation = Literal["serializable", "repeatable_read", "read_committed"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter between re-runs of a failed transaction."""

    max_retries: int = 30
    base_delay_seconds: float = 0.005
    max_delay_seconds: float = 1.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography


@dataclass
class RetryStats:
    """Counters the retry loop keeps, so tests and metrics can see retries happen."""

    retries: int = 0
    exhausted: int = 0


@dataclass
class Database:
    """The process's engine and the scope around it."""

    settings: Settings
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    stats: RetryStats = field(default_factory=RetryStats)
    _engine: AsyncEngine | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings, RetryPolicy(max_retries=settings.db_max_retries))

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database engine is not started (Database.start)")
        return self._engine

    async def start(self) -> None:
        if self._engine is not None:
            return
        if self.settings.database_url is None:
            raise ConfigError(
                "DATABASE_URL is not set. `minor-illusion serve` starts the embedded PostgreSQL "
                "and sets it; when running the app another way, set DATABASE_URL."
            )
        self._engine = create_engine(self.settings)

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None

    async def run(self, work: Work[T], *, single_statement: bool = False) -> T:
        """Run `work` in one transaction: commit on success, roll back on error, retry on 40001.

        With `single_statement`, for a unit that sends one statement (or whose correctness
        rests on each statement alone, such as an UPDATE that checks and changes a row at
        once, followed on failure by a read that explains why), no BEGIN and COMMIT are sent:
        each statement is its own implicit transaction, at the same isolation level and
        retried the same way. That saves two round trips on the hot routes.
        """
        engine = self.engine
        isolation = _asyncpg_isolation(self.settings)

        async def attempt() -> T:
            pooled = await engine.raw_connection()
            try:
                executor = Executor(pooled.driver_connection, engine.dialect)
                if single_statement:
                    return await work(executor)
                async with executor.connection.transaction(isolation=isolation):
                    return await work(executor)
            except BaseException as error:
                if not leaves_connection_usable(error):
                    # A timeout or cancellation can leave a reply half read, and a lost
                    # connection is lost: never hand it to another unit.
                    pooled.invalidate(error)
                raise
            finally:
                pooled.close()

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Re-run `attempt` on serialization failures; turn database errors into ours."""
        retries = 0
        while True:
            try:
                return await attempt()
            except (DBAPIError, asyncpg.PostgresError) as error:
                if sqlstate_of(error) != SERIALIZATION_FAILURE:
                    meaning = translated(error)
                    if meaning is error:
                        raise
                    raise meaning from error
                if retries >= self.retry_policy.max_retries:
                    self.stats.exhausted += 1
                    log.warning("transaction retries exhausted", attempts=retries + 1)
                    raise DatabaseBusy("too much contention, try again") from error
                self.stats.retries += 1
                await asyncio.sleep(self.retry_policy.delay(retries))
                retries += 1
            except CONNECTION_LOST as error:
                raise DatabaseUnavailable(type(error).__name__) from error
            except PoolTimeoutError as error:
                # Every pooled connection stayed busy for DB_CONNECT_TIMEOUT_SECONDS: the
                # database is too slow to keep up (or hangs), which the client may retry.
                raise DatabaseBusy("no database connection free, try again") from error


def _asyncpg_isolation(settings: Settings) -> AsyncpgIsolation:
    level = settings.db_isolation_level
    if level == "SERIALIZABLE":
        return "serializable"
    if level == "REPEATABLE READ":
        return "repeatable_read"
    return "read_committed"


def create_engine(settings: Settings) -> AsyncEngine:
    """The one pooled engine of this process, with timeouts so an outage fails fast."""
    assert settings.database_url is not None
    url, tls = asyncpg_ssl_context(normalise(settings.database_url, "asyncpg"))
    server_settings = {"application_name": "minor-illusion"}
    if not is_cockroachdb(url):
        # Statements outside BEGIN (single-statement units) run at the configured level too,
        # so PostgreSQL behaves as CockroachDB, which is SERIALIZABLE throughout.
        server_settings["default_transaction_isolation"] = settings.db_isolation_level.lower()
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout_seconds,
        # Off by default: a ping costs a round trip on every checkout. A connection that died
        # (database restarted) fails its request with 503 once, and SQLAlchemy then discards
        # every connection opened before the failure, so the pool heals by itself.
        pool_pre_ping=settings.db_pool_pre_ping,
        isolation_level=settings.db_isolation_level,
        # Error messages (and so logged tracebacks) show statements without their values:
        # registration binds a password hash, and rows carry users' text.
        hide_parameters=True,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds,
            "server_settings": server_settings,
            **tls,
        },
    )
