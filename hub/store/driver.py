"""Prebuilt statements run on the database driver's own cursor, inside the caller's transaction.

``Connection.execute`` costs about 75 µs a statement here beyond the database's own work (the
compiled-cache lookup, parameter processing, the execution context and its events, result
metadata), and placing an order runs some twenty statements: on SQLite more than the statements
themselves. A ``Prepared`` statement is compiled by SQLAlchemy once per dialect; each run binds
its parameters in the compiled order through the types' own processors and runs it on the
DB-API connection under the caller's ``sa.Connection`` (its transaction, its ``BEGIN``).
Driver errors come back as SQLAlchemy's (``IntegrityError``, ``OperationalError`` ...), as from
``Connection.execute``, so callers translate them the same way. Rows are named tuples with the
statement's column keys, passed through the column types' result processors (a Boolean is a bool
on SQLite too).

An INSERT without its own VALUES is compiled per set of parameter names, as Connection.execute
does: the columns not given keep their defaults. A statement with ``IN`` lists bound at execution
(expanding parameters) runs through ``Connection.execute``: its SQL depends on the lists.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["Prepared"]

@dataclass(slots=True)
class _Compiled:
    sql: str
    compiled: sa.engine.Compiled
    positional: tuple[str, ...] | None  # parameter names in order (qmark drivers); None: by name
    expanding: bool  # IN lists bound at execution: run by Connection.execute
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # parameters whose type converts them
    row: Callable[[Sequence[Any]], Any] | None  # a result row as a named tuple (None: no rows)
    columns: tuple[sa.ColumnElement[Any], ...]
    error: type[Exception]  # the driver's base error
    # columns whose type converts them, as the driver describes them: known from the first run
    results: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None


def _compile(statement: sa.Executable, dialect: Dialect, keys: tuple[str, ...] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
    binds = []
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds.append((compiled.escaped_bind_names.get(name, name), process))
    columns = tuple(getattr(statement, "exported_columns", ()))
    row = _row_type([str(c.key) for c in columns]) if columns else None
    positional = tuple(compiled.positiontup) if dialect.paramstyle in ("qmark", "numeric", "format") else None
    expanding = any(bind.expanding for bind in compiled.bind_names)
    return _Compiled(compiled.string, compiled, positional, expanding, tuple(binds), row, columns,
                     dialect.loaded_dbapi.Error)


def _row_type(names: list[str]) -> Callable[[Sequence[Any]], Any]:
    """Rows as named tuples: indexed like a row, named by the statement's column keys (duplicates renamed)."""
    return collections.namedtuple("Row", names, rename=True)._make  # type: ignore[attr-defined,no-any-return]


def _result_processors(c: _Compiled, dialect: Dialect, description: Sequence[Sequence[Any]]
                       ) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    out = []
    for i, (column, described) in enumerate(zip(c.columns, description, strict=True)):
        process = column.type.dialect_impl(dialect).result_processor(dialect, described[1])
        if process is not None:
            out.append((i, process))
    return tuple(out)


class Prepared:
    """A statement compiled once per dialect and run on the driver's cursor (see the module)."""

    __slots__ = ("_by_dialect", "_keyed", "statement")

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        # an INSERT of the columns given: compiled per set of names
        self._keyed = isinstance(statement, sa.Insert) and not statement._values  # no public accessor
        self._by_dialect: dict[tuple[str, tuple[str, ...] | None], _Compiled] = {}

    def _for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        key = (dialect.name, tuple(params) if self._keyed else None)
        found = self._by_dialect.get(key)
        if found is None:
            found = self._by_dialect.setdefault(key, _compile(self.statement, dialect, key[1]))
        return found

    def rows(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run it with these parameters; the rows it returns, as named tuples (or, with IN lists, as
        Connection.execute gives them: rows indexed and named alike).

        Raises:
            sa.exc.DBAPIError: the database refused it (IntegrityError, OperationalError ...).
        """
        c = self._for(conn.dialect, params or {})
        if c.expanding:
            return list(conn.execute(self.statement, params).all())
        cursor = self._run(conn, c, params or {})
        try:
            if c.row is None or cursor.description is None:
                return []
            if c.results is None:
                c.results = _result_processors(c, conn.dialect, cursor.description)
            results = c.results
            return [c.row(_processed(r, results)) for r in cursor.fetchall()] if results else \
                [c.row(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def first(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        """The first row it returns, or None (see rows)."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None (see rows)."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def count(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run it (an INSERT, UPDATE or DELETE); the rows it changed (see rows for errors)."""
        c = self._for(conn.dialect, params or {})
        if c.expanding:
            return int(conn.execute(self.statement, params).rowcount)
        cursor = self._run(conn, c, params or {})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, conn: sa.Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run it once per parameter set (each with the same names), as one executemany (see rows for errors)."""
        if params:
            c = self._for(conn.dialect, params[0])
            if c.expanding:
                conn.execute(self.statement, list(params))
                return
            bound = [_bound(c, p) for p in params]
            _guarded(c, lambda cursor: cursor.executemany(c.sql, bound), conn, bound).close()

    @staticmethod
    def _run(conn: sa.Connection, c: _Compiled, params: Mapping[str, Any]) -> Any:
        bound = _bound(c, params)
        return _guarded(c, lambda cursor: cursor.execute(c.sql, bound), conn, bound)


def _bound(c: _Compiled, params: Mapping[str, Any]) -> Any:
    values = dict(c.compiled.construct_params(params) or {})
    for name, process in c.binds:
        values[name] = process(values[name])
    return values if c.positional is None else tuple(values[name] for name in c.positional)


def _processed(row: Sequence[Any], results: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    out = list(row)
    for i, process in results:
        out[i] = process(out[i])
    return out


def _guarded(c: _Compiled, run: Callable[[Any], object], conn: sa.Connection, bound: Any) -> Any:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        run(cursor)
    except c.error as exc:
        cursor.close()
        raise sa.exc.DBAPIError.instance(c.sql, bound, exc, c.error, dialect=conn.dialect) from exc
    return cursor

