"""What database errors mean for a client: unavailable (503), busy (503), the client's own
input (422), a row gone meanwhile, or a bug.

asyncpg raises its own errors; these sort them by SQLSTATE class and by whether the connection
they came from can be reused.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

SERIALIZATION_FAILURE = "40001"
DATA_EXCEPTION_CLASS = "22"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"

# Connection exceptions (08), operator intervention such as shutdown or a cancelled statement
# (57), and insufficient resources such as too many connections (53): the database cannot
# serve right now, which a client should hear as 503, not 500.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57", "53")


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused to serve; clients get 503 and may retry."""


class InvalidData(Exception):
    """The database refused a value (SQLSTATE class 22, e.g. out of range): the client's input."""


class MissingReference(Exception):
    """A row the statement refers to is gone (SQLSTATE 23503), e.g. deleted concurrently."""


class DuplicateValue(Exception):
    """A unique value is taken (SQLSTATE 23505), e.g. by a concurrent rename: a 409."""


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


CONNECTION_LOST = (
    OSError,  # ConnectionError among them
    TimeoutError,
    asyncpg.InterfaceError,
    # A session the server ended (shutdown: 57P01) while its connection sat idle in the pool
    # leaves asyncpg's protocol in an error state until it sees the socket close.
    asyncpg.InternalClientError,
)
"""Errors that leave no usable connection behind: the database is (or was) out of reach."""


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, CONNECTION_LOST):
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


def translated(error: DBAPIError | asyncpg.PostgresError) -> Exception:
    """What a database error means for the client: 503, 422, or a bug (the error itself)."""
    if is_unavailable(error):
        return DatabaseUnavailable(str(sqlstate_of(error)))
    if (sqlstate_of(error) or "").startswith(DATA_EXCEPTION_CLASS):
        return InvalidData(str(sqlstate_of(error)))
    if sqlstate_of(error) == FOREIGN_KEY_VIOLATION:
        return MissingReference(str(sqlstate_of(error)))
    if sqlstate_of(error) == UNIQUE_VIOLATION:
        return DuplicateValue(str(sqlstate_of(error)))
    return error


def leaves_connection_usable(error: BaseException) -> bool:
    """Whether a connection is still fit for the pool after `error` interrupted a unit.

    An error the server answered with (a constraint, a serialization failure) or one the app
    raised between statements leaves it idle and healthy; anything else may not.
    """
    if isinstance(error, asyncpg.PostgresError):
        return not is_unavailable(error)
    if isinstance(error, CONNECTION_LOST):
        return False
    return isinstance(error, Exception)  # not after a cancellation: the reply may be unread
