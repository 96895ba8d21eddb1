"""Keyset (seek) pagination with opaque cursors.

A cursor is url-safe base64 of JSON {"o": <order name>, "k": [<sort key values of the
last row>]}. The next page is "rows strictly after that key in the same order", so
pages stay stable while new rows arrive, and every page is an index range scan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, literal, or_

from hemovision_history.errors import InvalidCursor, InvalidRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def page_limit(limit: int) -> int:
    """0 = the default; 1..200; above 200 is clamped; negative is an error."""
    if limit < 0:
        raise InvalidRequest("page.limit must be between 0 and 200")
    return DEFAULT_LIMIT if limit == 0 else min(limit, MAX_LIMIT)


@dataclass(frozen=True)
class SortKey:
    """One column of an ordering; `kind` says how its value travels in the cursor."""

    column: Any
    descending: bool
    kind: str  # "ts" | "str" | "float" | "bool" | "int"


def _dump(value: Any, kind: str) -> Any:
    if kind == "ts":
        return value.isoformat()
    if kind == "str":
        return str(value)
    return value


def _load(value: Any, kind: str) -> Any:
    if kind == "ts":
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    raise ValueError


def encode_cursor(order: str, keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    payload = {"o": order, "k": [_dump(v, k.kind) for k, v in zip(keys, values, strict=True)]}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str, keys: Sequence[SortKey]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("o") != order:
            raise ValueError
        values = payload.get("k")
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError
        return [_load(v, k.kind) for k, v in zip(keys, values, strict=True)]
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
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
