"""The one way SQL reaches the database: statements built once, run on a pooled driver
connection.

Every statement of the app is a `Statement`: a SQLAlchemy construct built once, at import, in
the model module of its resource, with a bind parameter for everything that varies per call.
It is compiled once per dialect and sent as it is to asyncpg, which prepares it once per
connection. Per call, SQLAlchemy neither walks the statement for a cache key nor builds ORM
objects: a unit of work gets an `Executor` and rows that answer `row.title` and
`row._asdict()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

StatementObserver = Callable[[str, Sequence[object]], None]
_observers: list[StatementObserver] = []
"""Called with every statement an Executor sends: see `sent_statements`."""
NO_PARAMETERS: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A statement's SQL for one dialect, with the order of its positional parameters and
    the values of the constants it binds."""

    sql: str
    names: tuple[str, ...]
    constants: Mapping[str, object]

    def arguments(self, params: Mapping[str, object]) -> tuple[object, ...]:
        constants = self.constants
        return tuple(params[name] if name in params else constants[name] for name in self.names)


class Statement:
    """A fixed SQL statement: built once, compiled once per dialect, run many times.

    Parameter names never equal a column name: in an INSERT or UPDATE those are reserved for
    the values of the columns.
    """

    __slots__ = ("_compiled", "clause")

    def __init__(self, clause: ClauseElement) -> None:
        self.clause = clause
        self._compiled: dict[str, CompiledStatement] = {}

    def compiled(self, dialect: Dialect) -> CompiledStatement:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiler = cast(SQLCompiler, self.clause.compile(dialect=dialect))
            if compiler.positiontup is None:
                raise TypeError(f"{dialect.name} does not use positional parameters")
            required = {name for name, bind in compiler.binds.items() if bind.required}
            constants = {k: v for k, v in compiler.params.items() if k not in required}
            compiled = CompiledStatement(compiler.string, tuple(compiler.positiontup), constants)
            self._compiled[dialect.name] = compiled
        return compiled


class Row(asyncpg.Record):  # type: ignore[misc]
    """A row that also answers `row.title`, so code (and pydantic's `from_attributes`) reads
    its fields by name. `_asdict` is the fast way to all of them."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, Any]:
        return dict(self.items())


@dataclass(frozen=True, slots=True)
class Executor:
    """What a unit of work runs its statements on: one pooled connection, inside the
    transaction the scope opened, or with each statement its own implicit transaction
    (see `Database.run`)."""

    connection: Any  # asyncpg.Connection, which ships no type information
    dialect: Dialect

    async def rows(
        self, statement: Statement, params: Mapping[str, object] = NO_PARAMETERS
    ) -> list[Row]:
        compiled = statement.compiled(self.dialect)
        arguments = compiled.arguments(params)
        for observe in _observers:
            observe(compiled.sql, arguments)
        rows: list[Row] = await self.connection.fetch(compiled.sql, *arguments, record_class=Row)
        return rows

    async def one_or_none(
        self, statement: Statement, params: Mapping[str, object] = NO_PARAMETERS
    ) -> Row | None:
        rows = await self.rows(statement, params)
        return rows[0] if rows else None

    async def one(self, statement: Statement, params: Mapping[str, object] = NO_PARAMETERS) -> Row:
        rows = await self.rows(statement, params)
        if len(rows) != 1:
            raise LookupError(f"expected one row, got {len(rows)}")
        return rows[0]


@contextlib.contextmanager
def sent_statements() -> Iterator[list[tuple[str, Sequence[object]]]]:
    """Every statement (SQL and arguments, in order) that executors send while the block
    runs: for tests and benchmarks that check how many round trips a route makes."""
    sent: list[tuple[str, Sequence[object]]] = []

    def observe(sql: str, args: Sequence[object]) -> None:
        sent.append((sql, args))

    _observers.append(observe)
    try:
        yield sent
    finally:
        _observers.remove(observe)
