"""The audit log: services and users append events; admins read them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta

from hemovision_contracts import ML_ENGINEER, ORG_ADMIN, PLATFORM_ADMIN
from hemovision_history import domain
from hemovision_history.errors import InvalidRequest, RoleRequired, ServiceTokenRequired
from hemovision_history.pagination import page_limit
from hemovision_history.repository import AuditRepository
from hemovision_history.service.validation import check, clean_text, is_uuid, organization_of

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
MAX_APPEND_EVENTS = 500
MAX_DETAILS_CHARS = 16_384
# An appended event may carry the writer's clock; more than this ahead of ours is refused.
MAX_CLOCK_AHEAD = timedelta(minutes=10)
SOURCE_HISTORY = "history"


def clean_action(action: str, field: str = "action") -> str:
    action = action.strip()
    check(bool(_ACTION.match(action)) and len(action) <= 128,
          f"{field} must look like 'object.verb' (lower case, dots), e.g. 'model.activate'")
    return action


def parse_details(details_json: str, field: str = "details_json") -> dict:
    """A JSON object of at most 16 KiB ("" = {})."""
    if not details_json.strip():
        return {}
    check(len(details_json) <= MAX_DETAILS_CHARS, f"{field} is larger than 16 KiB")
    try:
        details = json.loads(details_json)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{field} must be a JSON object") from exc
    check(isinstance(details, dict), f"{field} must be a JSON object")
    return details


def clean_client_ip(value: str, field: str = "client_ip") -> str:
    """"" or an IPv4/IPv6 address (as the gateway writes it)."""
    value = value.strip()
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidRequest(f"{field} must be an IP address") from None


def metadata_client_ip(value: str) -> str:
    """The request-origin metadata's client IP, kept only when it is an address (informational:
    a bad value is dropped, never a reason to refuse the call)."""
    try:
        return clean_client_ip(value)
    except InvalidRequest:
        return ""


class AuditService:
    def __init__(self, repository: AuditRepository, *, append_services: frozenset[str] = frozenset()) -> None:
        self.repo = repository
        self.append_services = append_services

    async def record(
        self, caller: domain.Caller, *, action: str, target_type: str, target_id: str, details_json: str
    ) -> domain.AuditEvent:
        """Any caller; the event carries the caller's organization ("" for platform actions), the
        client IP of the request-origin metadata, and as source the calling service of an
        on-behalf-of token (its `act` claim), else "history"."""
        return await asyncio.to_thread(
            self.repo.record_audit_event,
            organization_id=caller.organization_id,
            user_id=caller.user_id,
            action=clean_action(action),
            target_type=clean_text(target_type, "target_type", 64),
            target_id=clean_text(target_id, "target_id", 128),
            details=parse_details(details_json),
            client_ip=caller.client_ip,
            source=caller.acting_service or SOURCE_HISTORY,
        )

    async def append(
        self, caller: domain.Caller, events: list[domain.NewAuditEvent], *, now: datetime | None = None,
    ) -> list[str]:
        """Events a service witnessed for others. Only a token whose `act` claim names one of the
        allowed services; the source stored is that service. Idempotent by event id."""
        if not caller.acting_service or caller.acting_service not in self.append_services:
            raise ServiceTokenRequired(sorted(self.append_services))
        check(len(events) <= MAX_APPEND_EVENTS, f"at most {MAX_APPEND_EVENTS} events per call; got {len(events)}")
        latest = (now or datetime.now(UTC)) + MAX_CLOCK_AHEAD
        cleaned = []
        for i, e in enumerate(events):
            f = f"events[{i}]"
            check(is_uuid(e.id), f"{f}.id must be a UUID")
            check(e.occurred_at is None or e.occurred_at <= latest, f"{f}.occurred_at is in the future")
            cleaned.append(domain.NewAuditEvent(
                id=e.id.strip().lower(),
                organization_id=clean_text(e.organization_id, f"{f}.organization_id", 64),
                user_id=clean_text(e.user_id, f"{f}.user_id", 64),
                action=clean_action(e.action, f"{f}.action"),
                target_type=clean_text(e.target_type, f"{f}.target_type", 64),
                target_id=clean_text(e.target_id, f"{f}.target_id", 128),
                details_json=e.details_json,
                details=parse_details(e.details_json, f"{f}.details_json"),
                occurred_at=e.occurred_at,
                client_ip=clean_client_ip(e.client_ip, f"{f}.client_ip"),
            ))
        return await asyncio.to_thread(self.repo.append_audit_events, events=cleaned, source=caller.acting_service)

    async def page(
        self, caller: domain.Caller, *, filter: domain.AuditFilter, limit: int, cursor: str  # noqa: A002
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
        check(filter.created_start is None or filter.created_end is None or filter.created_start <= filter.created_end,
              "created.start must not be after created.end")
        cleaned = domain.AuditFilter(
            action_prefix=clean_text(filter.action_prefix, "action_prefix", 128),
            user_id=clean_text(filter.user_id, "user_id", 64),
            target_id=clean_text(filter.target_id, "target_id", 128),
            created_start=filter.created_start,
            created_end=filter.created_end,
        )
        return await asyncio.to_thread(
            self.repo.list_audit_events, organization_id=org, filter=cleaned, limit=page_limit(limit), cursor=cursor,
        )
