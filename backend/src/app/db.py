"""The engine lifecycle and the transaction scope every handler goes through.

One pooled `AsyncEngine` per process, created when the app starts serving and disposed when it
stops. A unit of work is an async callable taking the session; `Database.run` commits it, rolls
it back on error and re-runs it whole when the database reports a serialization failure
(SQLSTATE 40001), which CockroachDB does under contention for any transaction and PostgreSQL
does at SERIALIZABLE. Because a retry re-runs the callable, it must not have side effects
outside the database.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only, greenlet_spawn

from app.database_url import asyncpg_ssl_context, is_cockroachdb, normalise
from app.driver import DriverConnection
from app.models import SchemaDAO
from app.settings import ConfigError, Settings

Session: TypeAlias = AsyncSession
"""What a unit of work receives; handlers name it through this alias, not through SQLAlchemy."""

T = TypeVar("T")
UnitOfWork: TypeAlias = Callable[[Session], Awaitable[T]]
PreparedWork: TypeAlias = Callable[[DriverConnection], Awaitable[T]]

SERIALIZATION_FAILURE = "40001"
DATA_EXCEPTION_CLASS = "22"
FOREIGN_KEY_VIOLATION = "23503"

# Connection exceptions (08), operator intervention such as shutdown or a cancelled statement
# (57), and insufficient resources such as too many connections (53): the database cannot
# serve right now, which a client should hear as 503, not 500.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57", "53")

log = structlog.get_logger(__name__)


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused to serve; clients get 503 and may retry."""


class InvalidData(Exception):
    """The database refused a value (SQLSTATE class 22, e.g. out of range): the client's input."""


class MissingReference(Exception):
    """A row the statement refers to is gone (SQLSTATE 23503), e.g. deleted concurrently."""


class DatabaseBusy(DatabaseUnavailable):
    """Serialization retries were exhausted under contention; clients get 503 and may retry."""


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy error, whichever driver raised it."""
    candidates = [error, getattr(error, "orig", None)]
    candidates.append(getattr(candidates[-1], "__cause__", None))
    for candidate in candidates:
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


_CONNECTION_LOST = (
    OSError,  # ConnectionError among them
    TimeoutError,
    asyncpg.InterfaceError,
    # A session the server ended (shutdown: 57P01) while its connection sat idle in the pool
    # leaves asyncpg's protocol in an error state until it sees the socket close.
    asyncpg.InternalClientError,
)
"""Errors that leave no usable connection behind: the database is (or was) out of reach."""


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, _CONNECTION_LOST):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate).startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        state = sqlstate_of(error)
        if state is not None:
            return state.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
        # No SQLSTATE: the driver lost the connection or timed out before the server answered.
        return isinstance(error, OperationalError | InterfaceError) or isinstance(
            error.orig, OSError | TimeoutError
        )
    return False


def _translated(error: DBAPIError | asyncpg.PostgresError) -> Exception:
    """What a database error means for the client: 503, 422, or a bug (the error itself)."""
    if is_unavailable(error):
        return DatabaseUnavailable(str(sqlstate_of(error)))
    if (sqlstate_of(error) or "").startswith(DATA_EXCEPTION_CLASS):
        return InvalidData(str(sqlstate_of(error)))
    if sqlstate_of(error) == FOREIGN_KEY_VIOLATION:
        return MissingReference(str(sqlstate_of(error)))
    return error


def _leaves_connection_usable(error: BaseException) -> bool:
    """Whether a connection is still fit for the pool after `error` interrupted a unit.

    An error the server answered with (a constraint, a serialization failure) or one the app
    raised between statements leaves it idle and healthy; anything else may not.
    """
    if isinstance(error, asyncpg.PostgresError):
        return not is_unavailable(error)
    if isinstance(error, _CONNECTION_LOST):
        return False
    return isinstance(error, Exception)  # not after a cancellation: the reply may be unread


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
    """The process's engine and the transaction scope around it."""

    settings: Settings
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    stats: RetryStats = field(default_factory=RetryStats)
    _engine: AsyncEngine | None = None
    _sessions: async_sessionmaker[AsyncSession] | None = None
    _autocommit_sessions: async_sessionmaker[AsyncSession] | None = None

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
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._autocommit_sessions = async_sessionmaker(
            self._engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None
        self._autocommit_sessions = None

    async def run(self, work: UnitOfWork[T], *, autocommit: bool = False) -> T:
        """Run `work` in one transaction: commit on success, roll back on error, retry on 40001.

        With `autocommit`, each statement is its own (implicit) transaction: no BEGIN and
        COMMIT round trips. That is for units whose correctness rests on single statements,
        such as one SELECT, or one UPDATE that checks and changes a row at once. Implicit
        transactions run at the same isolation level, and are retried the same way;
        CockroachDB can even retry them on the server.
        """
        sessions = self._autocommit_sessions if autocommit else self._sessions
        if sessions is None:
            raise RuntimeError("the database engine is not started (Database.start)")

        async def attempt() -> T:
            async with sessions() as session, session.begin():
                return await work(session)

        return await self._retrying(attempt)

    async def run_prepared(self, work: PreparedWork[T]) -> T:
        """Run `work` on a pooled connection through the driver, each statement autocommitted.

        For units made only of models.py's prebuilt statements, which run as they are on the
        driver connection (see app.driver): the hot routes, where SQLAlchemy's session would
        cost more CPU than the query. Same pool, isolation, retries and errors as `run`.
        """
        engine = self.engine

        def checked_out() -> T:
            # One greenlet for the checkout, the unit and the return to the pool: SQLAlchemy's
            # pool is synchronous code that may await the driver (to connect or to close).
            pooled = engine.sync_engine.raw_connection()
            try:
                return await_only(work(DriverConnection(pooled.driver_connection, engine.dialect)))
            except BaseException as error:
                if not _leaves_connection_usable(error):
                    # A timeout or cancellation can leave a reply half read, and a lost
                    # connection is lost: never hand it to another request.
                    pooled.invalidate(error)
                raise
            finally:
                pooled.close()

        async def attempt() -> T:
            return await greenlet_spawn(checked_out)

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Re-run `attempt` on serialization failures; turn database errors into ours."""
        retries = 0
        while True:
            try:
                return await attempt()
            except (DBAPIError, asyncpg.PostgresError) as error:
                if sqlstate_of(error) != SERIALIZATION_FAILURE:
                    translated = _translated(error)
                    if translated is error:
                        raise
                    raise translated from error
                if retries >= self.retry_policy.max_retries:
                    self.stats.exhausted += 1
                    log.warning("transaction retries exhausted", attempts=retries + 1)
                    raise DatabaseBusy("too much contention, try again") from error
                self.stats.retries += 1
                await asyncio.sleep(self.retry_policy.delay(retries))
                retries += 1
            except _CONNECTION_LOST as error:
                raise DatabaseUnavailable(type(error).__name__) from error
            except PoolTimeoutError as error:
                # Every pooled connection stayed busy for DB_CONNECT_TIMEOUT_SECONDS: the
                # database is too slow to keep up (or hangs), which the client may retry.
                raise DatabaseBusy("no database connection free, try again") from error

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; raises DatabaseUnavailable when unreachable."""
        return await self.run(SchemaDAO.current_revision, autocommit=True)


def create_engine(settings: Settings) -> AsyncEngine:
    """The one pooled engine of this process, with timeouts so an outage fails fast."""
    assert settings.database_url is not None
    url, tls = asyncpg_ssl_context(normalise(settings.database_url, "asyncpg"))
    server_settings = {"application_name": "minor-illusion"}
    if not is_cockroachdb(url):
        # Statements outside BEGIN (autocommit units) run at the configured level too, so
        # PostgreSQL behaves as CockroachDB, which is SERIALIZABLE throughout.
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
