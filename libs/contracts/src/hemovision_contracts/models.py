"""Model-version events the training service announces and inference replicas follow."""

from __future__ import annotations

import json

# Redis pub/sub channel: an organization's adapted version was activated (or rolled back to).
# Inference replicas pre-load it so the organization's next request finds it warm; routing itself
# still follows only the registry's answer for the caller's token.
ORGANIZATION_VERSION_CHANNEL = "hv:models:organization-version"


def organization_version_event(organization_id: str, version: int) -> str:
    return json.dumps({"organization_id": organization_id, "version": int(version)})


def parse_organization_version_event(data: bytes | str) -> tuple[str, int]:
    """(organization_id, version); ValueError for anything else."""
    try:
        raw = json.loads(data)
        org, version = str(raw["organization_id"]), int(raw["version"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"not an organization-version event: {data!r:.200}") from exc
    if not org or version < 1:
        raise ValueError(f"not an organization-version event: {data!r:.200}")
    return org, version
