"""The hot paths' statements on SQLite, executed on the driver's connection.

Through SQLAlchemy Core a statement costs ≈ 13 µs of CPU here (the compiled cache's lookup,
an execution context, a result object) against ≈ 1 µs for the same SQL on ``sqlite3``'s own
connection. A registration makes a dozen of them: 0.17-0.25 ms of the server's 2.5-2.8 ms.

``run`` and ``run_many`` compile each statement once, per set of parameter names, and then
hand its SQL and parameters straight to the driver, converting values as the columns' types
do (a boolean read back, for one). A statement qualifies only when SQLAlchemy has nothing else
to do at execution: no column default is computed in Python, no parameter expands into a
list, every result column has a name of its own. Any other statement, and every statement on
another database, runs through ``Connection.execute`` as before; either way the caller gets
the same ``Rows``. A driver error is raised as SQLAlchemy raises it (``DBAPIError.instance``),
so the callers' handling of, say, ``IntegrityError`` holds.

Statements given here are built once, at import (``store.statements``): plans are kept per
statement object, and a statement built per call would only fill the cache.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from keyword import iskeyword
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Processor = Callable[[Any], Any]
_MOST_PLANS = 256  # far more than the statements given here; reached only by misuse


class Rows:
    """The rows a statement returned (each read by position or by column name) and the
    number of rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("no row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


@dataclass(frozen=True)
class _Plan:
    statement: Executable  # kept alive with its plan, so its id (the cache's key) stays its own
    sql: str
    compiled: SQLCompiler
    order: tuple[str, ...]
    binds: tuple[Processor | None, ...] | None  # per parameter, by position; None: no one
    row: type | None  # the named tuple of its result rows; None: it returns none
    results: tuple[Processor | None, ...] | None  # per column; None: no one


_plans: dict[tuple[int, tuple[str, ...]], _Plan | None] = {}


def run(conn: Connection, statement: Executable, params: Mapping[str, Any] | None = None) -> Rows:
    """Execute *statement* once with *params* in *conn*'s transaction."""
    given = params or {}
    plan = _plan(conn, statement, given)
    if plan is None:
        result = conn.execute(statement, dict(given))
        return Rows(list(result) if result.returns_rows else [], result.rowcount)
    try:
        cursor = _driver(conn).execute(plan.sql, _positional(plan, given))
        rows = cursor.fetchall() if plan.row is not None else []
    except sqlite3.Error as exc:
        raise DBAPIError.instance(plan.sql, given, exc, sqlite3.Error) from exc
    if plan.row is not None:
        make, results = plan.row._make, plan.results  # type: ignore[attr-defined]
        if results is None:
            rows = [make(r) for r in rows]
        else:
            rows = [
                make([v if f is None else f(v) for f, v in zip(results, r, strict=True)])
                for r in rows
            ]
    return Rows(rows, cursor.rowcount)


def run_many(conn: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute *statement*, which returns no rows, once for each of *rows*."""
    if not rows:
        return
    plan = _plan(conn, statement, rows[0])
    if plan is None or plan.row is not None:
        conn.execute(statement, [dict(r) for r in rows])
        return
    batch = [_positional(plan, r) for r in rows]
    try:
        _driver(conn).executemany(plan.sql, batch)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(plan.sql, list(rows), exc, sqlite3.Error) from exc


def _driver(conn: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, conn.connection.dbapi_connection)


def _positional(plan: _Plan, params: Mapping[str, Any]) -> list[Any]:
    values = plan.compiled.construct_params(params)
    if plan.binds is None:
        return [values[name] for name in plan.order]
    return [
        values[name] if f is None else f(values[name])
        for f, name in zip(plan.binds, plan.order, strict=True)
    ]


def _plan(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> _Plan | None:
    if conn.dialect.name != "sqlite":
        return None
    key = (id(statement), tuple(params))
    try:
        plan = _plans[key]
    except KeyError:
        if len(_plans) >= _MOST_PLANS:
            _plans.clear()
        plan = _plans[key] = _planned(conn, statement, tuple(params))
    return plan


def _planned(conn: Connection, statement: Executable, names: tuple[str, ...]) -> _Plan | None:
    """How to run *statement* on the driver, or None when it needs SQLAlchemy's execution."""
    if not isinstance(statement, Select | UpdateBase):
        return None
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        return None
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.post_compile_params
        or compiled.literal_execute_params
    ):
        return None  # a default computed in Python, a parameter that expands
    order = tuple(compiled.positiontup)
    binds = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
    )
    columns = list(statement.exported_columns.items())  # what it SELECTs or RETURNs
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for _, column in columns
    )
    named = [name or "" for name, _ in columns]
    if len(set(named)) != len(named) or not all(
        n.isidentifier() and not iskeyword(n) and not n.startswith("_") for n in named
    ):
        return None  # rows read by name would not find every column
    row: type | None = namedtuple("Row", named) if named else None
    return _Plan(
        statement=statement,
        sql=compiled.string,
        compiled=compiled,
        order=order,
        binds=binds if any(binds) else None,
        row=row,
        results=results if any(results) else None,
    )
