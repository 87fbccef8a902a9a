"""Engines configured the way the store needs them, for PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import _sqlite_write

#: Execution option: on SQLite, run each statement in SQLite's own autocommit mode
#: (single-statement reads and writes need no BEGIN/COMMIT).
SQLITE_AUTOCOMMIT: Final = "checkpoints_autocommit"


def create_engine(url: str | sa.URL, *, schema: str | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine for `postgresql+asyncpg://…` or `sqlite+aiosqlite:///file`.

    SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` transactions, so concurrent
    writers (also in other processes) queue instead of failing with "database is locked".
    On PostgreSQL, `schema` becomes each connection's whole `search_path`: the store's
    tables are found (and created) there and nowhere else, e.g. beside another
    application's tables in `public`.
    """
    parsed = sa.make_url(url)
    # Bound parameters are user data: keep them out of exception messages and logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("SQLite has no schemas: leave `schema` unset")
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                "the checkpoint store needs a SQLite *file* (sqlite+aiosqlite:///path.db): "
                "an in-memory database is private to one connection"
            )
        engine = create_async_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_async_engine(parsed, **kwargs)
    if schema is not None:
        _use_schema(engine, schema)
    return engine


def _use_schema(engine: AsyncEngine, schema: str) -> None:
    quoted = engine.dialect.identifier_preparer.quote_identifier(schema)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A session-level SET outside any transaction (a rollback would undo it), sent as
        # a statement rather than a startup parameter, which some poolers drop silently.
        dbapi_connection.run_async(
            lambda connection: connection.execute(f"SET search_path TO {quoted}")
        )


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine for single statements, each committed on its own: PostgreSQL's
    AUTOCOMMIT isolation level, SQLite's own autocommit mode."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{SQLITE_AUTOCOMMIT: True})


def _configure_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: the "begin" hook below issues BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # In WAL mode NORMAL syncs the log at checkpoints, not at every commit: a commit
        # survives a crash of the process (what checkpoints guard against) and stays
        # atomic; only a power loss or OS crash may roll back the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        _sqlite_write.install(dbapi_connection)

    # aiosqlite runs each call on its connection's thread, and every connection ends with
    # a COMMIT or ROLLBACK, also those that ran single statements in SQLite's autocommit
    # mode: with no transaction open, that round trip to the thread does nothing.
    dialect = engine.dialect
    rollback, commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(dbapi_connection: Any) -> None:
        if dbapi_connection.driver_connection.in_transaction:
            rollback(dbapi_connection)

    def do_commit(dbapi_connection: Any) -> None:
        if dbapi_connection.driver_connection.in_transaction:
            commit(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    dialect.do_commit = do_commit  # type: ignore[method-assign]

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(SQLITE_AUTOCOMMIT):
            return
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with SQLITE_BUSY at once instead of waiting for the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
