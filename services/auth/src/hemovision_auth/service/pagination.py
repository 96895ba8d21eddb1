"""Auth's listings (users, organizations) page oldest first by (created_at, id), with the limit
rule and cursor format of hemovision_contracts.pagination."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from hemovision_auth.domain import Page
from hemovision_auth.errors import InvalidArgument
from hemovision_contracts import InvalidPage, decode_cursor, encode_cursor, page_limit

_KINDS = ("ts", "uuid")


def page_request(order: str, limit: int, cursor: str) -> tuple[int, tuple[datetime, UUID] | None]:
    """(rows to return, the (created_at, id) to continue after) of a PageRequest of listing `order`."""
    try:
        limit = page_limit(limit)
        return limit, (tuple(decode_cursor(cursor, order, _KINDS)) if cursor else None)
    except InvalidPage as exc:
        raise InvalidArgument(str(exc)) from None


def page_of(order: str, rows: list[Any], limit: int, item: Callable[[Any], Any]) -> Page:
    """The page of `rows` (fetched with limit + 1, to know whether more follow)."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(order, _KINDS, (rows[-1].created_at, rows[-1].id)) if more else ""
    return Page([item(row) for row in rows], next_cursor)
