"""A pooled connection used through asyncpg directly, for the hot statements.

SQLAlchemy's session and connection objects cost about three times what the query itself
costs in the worker (profiled: roughly 350 µs of CPU against 100 µs per request on GET
/todos/{id}). The hot statements (models.py `_TodoStatements`) are built once, compiled once
per dialect and need none of that machinery: `Database.run_prepared` checks a connection out
of the engine's own pool, so pool size, timeouts, TLS and server settings stay in one place,
and hands the driver connection to the unit as a `DriverConnection`. asyncpg prepares each
statement once per connection and reuses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine

StatementObserver = Callable[[str, Sequence[object]], None]
_observers: list[StatementObserver] = []
"""Called with every statement a DriverConnection sends: see `sent_statements`."""


class DriverRow(asyncpg.Record):  # type: ignore[misc]
    """A row that also answers `row.title`, as SQLAlchemy's rows do, so code that reads a few
    fields works on rows from either path. `_asdict` is the fast way to all of them."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, Any]:
        return dict(self.items())


@dataclass(frozen=True, slots=True)
class DriverConnection:
    """What a prepared unit of work runs its statements on (see `Database.run_prepared`).

    Each statement is its own implicit transaction, at the session's default isolation level
    (SERIALIZABLE: see `db.create_engine`).
    """

    connection: Any  # asyncpg.Connection, which ships no type information
    dialect: Dialect

    async def fetch(self, sql: str, args: Sequence[object]) -> list[DriverRow]:
        for observe in _observers:
            observe(sql, args)
        rows: list[DriverRow] = await self.connection.fetch(sql, *args, record_class=DriverRow)
        return rows


@contextlib.contextmanager
def sent_statements(engine: Engine) -> Iterator[list[tuple[str, Sequence[object]]]]:
    """Every statement (SQL and parameters, in order) sent while the block runs, whether
    through `engine` or straight to the driver: for tests and benchmarks that check what the
    app sends, whichever path a route takes."""
    sent: list[tuple[str, Sequence[object]]] = []

    def through_engine(conn: object, cursor: object, sql: str, args: Any, *_: object) -> None:
        sent.append((sql, args))

    def to_driver(sql: str, args: Sequence[object]) -> None:
        sent.append((sql, args))

    event.listen(engine, "before_cursor_execute", through_engine)
    _observers.append(to_driver)
    try:
        yield sent
    finally:
        _observers.remove(to_driver)
        event.remove(engine, "before_cursor_execute", through_engine)
