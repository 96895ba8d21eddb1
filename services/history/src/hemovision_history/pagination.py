"""Keyset (seek) pagination in SQL: the sort keys of each listing and the "rows after" clause.

The limit rule and the cursor format are hemovision_contracts.pagination's; this module maps
their refusals to history's errors. The next page is "rows strictly after the last row's key in
the same order", so pages stay stable while new rows arrive, and every page is an index range scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, literal, or_

from hemovision_contracts import pagination
from hemovision_history.errors import InvalidCursor, InvalidRequest


def page_limit(limit: int) -> int:
    """0 = the default (50); above 200 is lowered to 200; negative is an error."""
    try:
        return pagination.page_limit(limit)
    except pagination.InvalidPage as exc:
        raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True)
class SortKey:
    """One column of an ordering; `kind` says how its value travels in the cursor
    (a hemovision_contracts.pagination kind: "ts", "uuid", "str", "int", "float", "bool")."""

    column: Any
    descending: bool
    kind: str


def encode_cursor(order: str, keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    return pagination.encode_cursor(order, [k.kind for k in keys], values)


def decode_cursor(cursor: str, order: str, keys: Sequence[SortKey]) -> list[Any]:
    try:
        return pagination.decode_cursor(cursor, order, [k.kind for k in keys])
    except pagination.InvalidPage as exc:
        raise InvalidCursor() from exc


def after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order `keys` (mixed directions allowed)."""
    # Bound as literals of the column's type: `needs_review < false` is legal SQL.
    values = [literal(v, type_=k.column.type) for k, v in zip(keys, values, strict=True)]
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j].column == values[j] for j in range(i)]
        step = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def order_by(keys: Sequence[SortKey]) -> list[Any]:
    return [k.column.desc() if k.descending else k.column.asc() for k in keys]
