"""Input rules shared by the routes: dates and times are written as the schema says; numbers fit
the protobuf field they go into; text holds no NUL character.

pydantic alone reads a number such as "0" or "1700000000" as a Unix time for a `date` or
`datetime`; schemathesis found such values accepted (decision 47). An `int` without bounds takes
any size, and protobuf refuses one past its field's range with a ValueError while the request
message is built: an answer 500 (schemathesis: GET /models/103338019633858478714514309120). Every
number headed for a protobuf int field is bounded here, so it is a 422 instead.

PostgreSQL text cannot hold U+0000, and a service that passes one on to a query fails there
(schemathesis: an API key named "...\\u0000..." was a 502; so were `?name=` of the model routes,
`?sample_id=` of the prediction filters and a `model_name` in JSON). `refuse_nul` refuses it for
every /api route, in the query string, the path and a JSON body, before any service is called."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Request
from pydantic import BeforeValidator

from hemovision_gateway.errors import ApiError

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


# A model version: protobuf int64, kept to what a JSON number holds exactly (as StartRolloutBody does).
MAX_VERSION = 2**53
INT32_MAX = 2**31 - 1
# Annotated path parameter: /models/{version}
Version = Annotated[int, Path(ge=1, le=MAX_VERSION, description="the model version (1, 2, ...)")]


# A JSON string escape for U+0000 (`\u0000`) that is not itself an escaped backslash followed by
# "u0000": preceded by an even number of backslashes. A raw NUL byte is not valid JSON at all.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _parsed_as_json(content_type: str) -> bool:
    """FastAPI's own rule for a body it parses as JSON: no content type at all, `application/json`
    or an `application/*+json` type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def refuse_nul(request: Request) -> None:
    """Router dependency: 422 for a NUL character in the path, the query string or a JSON body.
    (Multipart forms carry binary files; their text fields are checked by the service that stores
    them.)"""
    if "\x00" in request.url.path:
        raise ApiError(422, "validation_error", "the path contains a NUL character")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise ApiError(422, "validation_error", f"query parameter {key.replace(chr(0), '')!r} contains a NUL character")
    if _parsed_as_json(request.headers.get("content-type", "")):
        body = await request.body()
        if b"\\u0000" in body and _JSON_NUL.search(body):
            raise ApiError(422, "validation_error", "the JSON body contains a NUL character (\\u0000)")
