"""Row -> domain object and the page cut, shared by the history repositories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from hemovision_history import domain
from hemovision_history.pagination import SortKey, encode_cursor

PREDICTION_FIELDS = [f.name for f in fields(domain.Prediction)]


def prediction_from(mapping: Mapping[str, Any], prefix: str = "") -> domain.Prediction:
    """A Prediction from a result row's mapping; `prefix` when the columns were labelled (joins)."""
    return domain.Prediction(**{name: mapping[prefix + name] for name in PREDICTION_FIELDS})


def cut_page(rows: list[Any], limit: int, order: str, keys: list[SortKey],
             key_of: Callable[[Any], list[Any]]) -> tuple[list[Any], str]:
    """Cuts the limit+1'th row off and builds the cursor of the last row kept."""
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_cursor(order, keys, key_of(rows[-1]))
