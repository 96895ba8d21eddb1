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
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidArgument(f"'{email[:80]}' is not a valid e-mail address")
    return email


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID") from None


def one_line(name: str) -> str:
    """A display name with its whitespace runs (newlines included) folded into single spaces."""
    return " ".join((name or "").split())


def refuse_on_behalf_of(principal: Principal, action: str) -> None:
    """Account management needs the user's own session: a batch worker's on-behalf-of token
    acts for the user only to do the work the user queued."""
    if principal.acting_service:
        raise PermissionDenied(f"an on-behalf-of token cannot {action}")
