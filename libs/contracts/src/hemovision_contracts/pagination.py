"""Cursor pagination of every List RPC (common.v1.PageRequest): the limit rule and the cursor.

Limit: 0 asks for the default (50); above 200 is lowered to 200; negative is refused. Lowering
rather than refusing follows Google's AIP-158 (page_size): a caller that asks for too much still
gets a full page and follows next_cursor like any other caller.

Cursor: url-safe base64 of JSON {"o": <order name>, "k": [<sort key values of the last row>]}.
The next page is "rows strictly after that key in the same order" (keyset pagination), so pages
stay stable while rows arrive. The order name makes a cursor of one listing useless in another.
Services turn InvalidPage into their INVALID_ARGUMENT error.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

# A sort key's kind says how its value travels in a cursor: "ts" a timezone-aware datetime
# (ISO 8601), "uuid" a UUID (its string), "str", "int", "float", "bool" as themselves.


class InvalidPage(ValueError):
    """A page request that cannot be served; the message is safe to show to the caller."""


def page_limit(limit: int) -> int:
    """The number of items to return for a requested `limit` (see the module docstring)."""
    if limit < 0:
        raise InvalidPage(f"page.limit must be between 0 and {MAX_LIMIT}")
    return DEFAULT_LIMIT if limit == 0 else min(limit, MAX_LIMIT)


def _dump(value: Any, kind: str) -> Any:
    if kind == "ts":
        return value.isoformat()
    if kind in ("uuid", "str"):
        return str(value)
    return value


def _load(value: Any, kind: str) -> Any:
    """The value of one sort key as the cursor carries it; ValueError if it is not of `kind`."""
    if kind == "ts" and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed
    elif kind == "str" and isinstance(value, str):
        return value
    elif kind == "uuid" and isinstance(value, str):
        return uuid.UUID(value)
    elif kind == "bool" and isinstance(value, bool):
        return value
    elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a cursor value of kind {kind}")


def encode_cursor(order: str, kinds: Sequence[str], values: Sequence[Any]) -> str:
    """The cursor that resumes `order` after the row whose sort key is `values`."""
    payload = {"o": order, "k": [_dump(v, k) for k, v in zip(kinds, values, strict=True)]}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str, kinds: Sequence[str]) -> list[Any]:
    """The sort key values in `cursor`; InvalidPage if it is not a cursor of `order`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("o") != order:
            raise ValueError
        values = payload.get("k")
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError
        return [_load(v, k) for k, v in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidPage("invalid page cursor") from exc
