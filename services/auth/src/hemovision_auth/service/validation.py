"""Checks of what a caller sends and of the token it sends it with, shared by every flow."""

from __future__ import annotations

import re
import uuid

from hemovision_auth.errors import InvalidArgument, PermissionDenied
from hemovision_tokens import Principal

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")


def normalize_email(email: str) -> str:
    """The address in lower case; InvalidArgument if it is missing or no e-mail address."""
    email = (email or "").strip().lower()
    if not email:
        raise InvalidArgument("e-mail address is required")
    if "\x00" in email:  # PostgreSQL text cannot hold it: refused here, not an INTERNAL from the INSERT
        raise InvalidArgument("e-mail address contains a NUL character")
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidArgument(f"'{email[:80]}' is not a valid e-mail address")
    return email


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID") from None


def one_line(name: str) -> str:
    """A display name with its whitespace runs (newlines included) folded into single spaces;
    InvalidArgument for a NUL character, which PostgreSQL text cannot store (schemathesis sent one
    in an API key's name: the INSERT failed and the caller saw a 502)."""
    if "\x00" in (name or ""):
        raise InvalidArgument("name contains a NUL character")
    return " ".join((name or "").split())


def refuse_on_behalf_of(principal: Principal, action: str) -> None:
    """Account management needs the user's own session: a batch worker's on-behalf-of token
    acts for the user only to do the work the user queued."""
    if principal.acting_service:
        raise PermissionDenied(f"an on-behalf-of token cannot {action}")
