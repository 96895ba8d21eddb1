"""Query-parameter rules shared by the routes: dates and times are written as the schema says.

pydantic alone reads a number such as "0" or "1700000000" as a Unix time for a `date` or
`datetime`; schemathesis found such values accepted (decision 47)."""

from __future__ import annotations

import re

from pydantic import BeforeValidator

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(value: object) -> object:
    if isinstance(value, str) and not _DAY.fullmatch(value):
        raise ValueError("must be a day written YYYY-MM-DD")
    return value


def _time(value: object) -> object:
    if isinstance(value, str) and not _DAY.match(value):
        raise ValueError("must be a time written ISO 8601, e.g. 2026-12-07 or 2026-12-07T10:00:00Z")
    return value


# Annotated[date | None, IsoDay, Query(...)]
IsoDay = BeforeValidator(_day)
# Annotated[datetime | None, IsoTime, Query(...)]
IsoTime = BeforeValidator(_time)
