"""The audit log: services and users append events; admins read them."""

from __future__ import annotations

import asyncio
import json
import re

from hemovision_contracts import ML_ENGINEER, ORG_ADMIN, PLATFORM_ADMIN
from hemovision_history import domain
from hemovision_history.errors import InvalidRequest, RoleRequired
from hemovision_history.pagination import page_limit
from hemovision_history.repository import AuditRepository
from hemovision_history.service.validation import check, clean_text, organization_of

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class AuditService:
    def __init__(self, repository: AuditRepository) -> None:
        self.repo = repository

    async def record(
        self, caller: domain.Caller, *, action: str, target_type: str, target_id: str, details_json: str
    ) -> domain.AuditEvent:
        """Any caller; the event carries the caller's organization ("" for platform actions)."""
        action = action.strip()
        check(bool(_ACTION.match(action)) and len(action) <= 128,
              "action must look like 'object.verb' (lower case, dots), e.g. 'model.activate'")
        details: dict = {}
        if details_json.strip():
            try:
                details = json.loads(details_json)
            except json.JSONDecodeError as exc:
                raise InvalidRequest("details_json must be a JSON object") from exc
            check(isinstance(details, dict), "details_json must be a JSON object")
            check(len(details_json) <= 16_384, "details_json is larger than 16 KiB")
        return await asyncio.to_thread(
            self.repo.record_audit_event,
            organization_id=caller.organization_id,
            user_id=caller.user_id,
            action=action,
            target_type=clean_text(target_type, "target_type", 64),
            target_id=clean_text(target_id, "target_id", 128),
            details=details,
        )

    async def page(
        self, caller: domain.Caller, *, action_prefix: str, limit: int, cursor: str
    ) -> domain.Page[domain.AuditEvent]:
        """org_admin: its organization's events; platform_admin: every organization's;
        ml_engineer: the platform's own events (organization "", e.g. model.activate)."""
        if caller.role == PLATFORM_ADMIN:
            org: str | None = None
        elif caller.role == ORG_ADMIN:
            org = organization_of(caller)
        elif caller.role == ML_ENGINEER:
            org = ""
        else:
            raise RoleRequired((ORG_ADMIN, ML_ENGINEER, PLATFORM_ADMIN))
        return await asyncio.to_thread(
            self.repo.list_audit_events,
            organization_id=org,
            action_prefix=clean_text(action_prefix, "action_prefix", 128),
            limit=page_limit(limit),
            cursor=cursor,
        )
