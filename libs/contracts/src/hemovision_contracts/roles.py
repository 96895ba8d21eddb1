"""Who may do what: the four role names a token carries and the role groups the services check.

The names are the `role` claim of an access token and the CHECK constraint of auth.users; the
proto enum hemovision.common.v1.Role is the same list on the wire, ROLE_<NAME> for each name
(role_to_proto / role_from_proto convert).
Each service turns a failed check into its own refusal (gRPC PERMISSION_DENIED, HTTP 403)
with `needs_role_message`, so every refusal reads the same.
"""

from __future__ import annotations

from collections.abc import Collection

from hemovision.common.v1 import common_pb2

LAB_USER = "lab_user"  # uploads images, reads and reviews its organization's predictions
ORG_ADMIN = "org_admin"  # a lab_user who also invites and manages its organization's users
ML_ENGINEER = "ml_engineer"  # trains, compares and activates model versions (platform-wide)
PLATFORM_ADMIN = "platform_admin"  # everything, incl. granting platform roles and forced activation
ROLES: tuple[str, ...] = (LAB_USER, ORG_ADMIN, ML_ENGINEER, PLATFORM_ADMIN)

# Scoped to one organization; the only roles an invitation or an org_admin can grant.
ORGANIZATION_ROLES: tuple[str, ...] = (LAB_USER, ORG_ADMIN)
# Platform-wide, usually without an organization: train and activate models, see every
# organization's model metadata (never its cells).
PLATFORM_ROLES: tuple[str, ...] = (ML_ENGINEER, PLATFORM_ADMIN)
# Manage users: an org_admin those of its organization, a platform_admin everyone.
USER_ADMIN_ROLES: tuple[str, ...] = (ORG_ADMIN, PLATFORM_ADMIN)
# "Adapt to our lab" and roll it back: the organization's own admin, or platform staff.
ADAPTATION_ROLES: tuple[str, ...] = (ORG_ADMIN, *PLATFORM_ROLES)


def has_role(role: str, allowed: Collection[str]) -> bool:
    return role in allowed


def needs_role_message(allowed: Collection[str]) -> str:
    """The refusal every service answers when a caller's role is not in `allowed`."""
    return f"this action needs the role {' or '.join(allowed)}"


def is_platform_role(role: str) -> bool:
    return role in PLATFORM_ROLES


def is_organization_role(role: str) -> bool:
    return role in ORGANIZATION_ROLES


def role_to_proto(role: str) -> int:
    """The common.v1.Role value of a role name; ROLE_UNSPECIFIED for anything else."""
    return common_pb2.Role.Value("ROLE_" + role.upper()) if role in ROLES else common_pb2.ROLE_UNSPECIFIED


def role_from_proto(value: int) -> str:
    """The role name of a common.v1.Role value; "" for ROLE_UNSPECIFIED or a number no role has."""
    name = common_pb2.Role.Name(value).removeprefix("ROLE_").lower() if value in common_pb2.Role.values() else ""
    return name if name in ROLES else ""
