"""Idempotent row writes on PostgreSQL and SQLite alike: insert once, or insert or update
(`INSERT … ON CONFLICT`), so a retried step writes nothing twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect


def upsert(
    dialect: Dialect,
    table: sa.Table,
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
    update: Sequence[str] = (),
) -> sa.Insert:
    """Insert `values` into `table`; on a conflict of `key`, set the `update` columns to
    the new values (or, with none, leave the existing row as it is)."""
    return upsert_statement(dialect, table, key=key, update=update).values(**values)


def upsert_statement(
    dialect: Dialect, table: sa.Table, *, key: Sequence[str], update: Sequence[str] = ()
) -> sa.Insert:
    """`upsert` without its values, to build once and execute with each row's values as
    parameters."""
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    if not update:
        return statement.on_conflict_do_nothing(index_elements=list(key))
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in update},
    )
