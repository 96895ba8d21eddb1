"""Facts every HemoVision service shares and none owns, defined once."""

from .classes import CLASS_NAMES, WHITE_BLOOD_CELL_CLASSES
from .models import ORGANIZATION_VERSION_CHANNEL, organization_version_event, parse_organization_version_event
from .pagination import DEFAULT_LIMIT, MAX_LIMIT, InvalidPage, decode_cursor, encode_cursor, page_limit
from .request_origin import CLIENT_IP_METADATA, USER_AGENT_METADATA, origin_from_metadata, origin_metadata
from .review import OUT_OF_DISTRIBUTION_REASONS, REVIEW_REASONS, confidence_holds
from .roles import (
    ADAPTATION_ROLES,
    LAB_USER,
    ML_ENGINEER,
    ORG_ADMIN,
    ORGANIZATION_ROLES,
    PLATFORM_ADMIN,
    PLATFORM_ROLES,
    ROLES,
    USER_ADMIN_ROLES,
    has_role,
    is_organization_role,
    is_platform_role,
    needs_role_message,
    role_from_proto,
    role_to_proto,
)

__all__ = [
    "CLIENT_IP_METADATA",
    "USER_AGENT_METADATA",
    "origin_from_metadata",
    "origin_metadata",
    "ADAPTATION_ROLES",
    "CLASS_NAMES",
    "DEFAULT_LIMIT",
    "InvalidPage",
    "LAB_USER",
    "MAX_LIMIT",
    "ML_ENGINEER",
    "ORGANIZATION_ROLES",
    "ORGANIZATION_VERSION_CHANNEL",
    "ORG_ADMIN",
    "OUT_OF_DISTRIBUTION_REASONS",
    "PLATFORM_ADMIN",
    "PLATFORM_ROLES",
    "REVIEW_REASONS",
    "ROLES",
    "USER_ADMIN_ROLES",
    "WHITE_BLOOD_CELL_CLASSES",
    "confidence_holds",
    "decode_cursor",
    "encode_cursor",
    "has_role",
    "is_organization_role",
    "is_platform_role",
    "needs_role_message",
    "organization_version_event",
    "page_limit",
    "parse_organization_version_event",
    "role_from_proto",
    "role_to_proto",
]
