"""CHECK constraint and partial index builders shared by the models.

Money is text on SQLite, and SQLite compares a text column with a number as text
('1.000000000000000000' > '1'), so every numeric CHECK casts its operands to NUMERIC:
exact on PostgreSQL, a float on SQLite. Rounding to float is monotonic, so on SQLite
such a CHECK never rejects a valid row; it can only miss a violation smaller than a
float's resolution, which PostgreSQL still catches and the services never produce.
Equality between two Money columns needs no cast: the canonical text is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CheckConstraint, TextClause, text


def num(column: str) -> str:
    """The column as a number in SQL, on both databases."""
    return f"CAST({column} AS NUMERIC)"


def one_of(column: str, values: Iterable[str], *, name: str | None = None) -> CheckConstraint:
    """`column IN (...)`, named after the column unless told otherwise."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name or column)


def non_negative(*columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{num(c)} >= 0", name=f"{c}_non_negative") for c in columns]


def positive(*columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{num(c)} > 0", name=f"{c}_positive") for c in columns]


def unit_interval(column: str) -> CheckConstraint:
    """0 <= column <= 1."""
    return CheckConstraint(f"{num(column)} >= 0 AND {num(column)} <= 1", name=f"{column}_range")


def partial(where: str) -> dict[str, Any]:
    """Keyword arguments making an Index partial on both databases."""
    clause: TextClause = text(where)
    return {"postgresql_where": clause, "sqlite_where": clause}
