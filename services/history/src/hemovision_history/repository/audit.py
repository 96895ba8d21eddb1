"""SQL of the audit log (schema `history`, table audit_events)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from hemovision_history import domain
from hemovision_history.pagination import SortKey, after, decode_cursor, order_by
from hemovision_history.repository.rows import cut_page
from hemovision_history.tables import audit_events

A = audit_events.c
_AUDIT_ORDER = [SortKey(A.created_at, True, "ts"), SortKey(A.id, True, "str")]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def append_audit_event(conn: Connection, *, organization_id: str, user_id: str, action: str, target_type: str,
                       target_id: str, details: dict) -> Any:
    """Appends one event inside the caller's transaction (a change and its audit entry commit together)."""
    return conn.execute(
        insert(audit_events)
        .values(
            id=str(uuid.uuid4()),
            organization_id=organization_id,
            user_id=user_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
        .returning(*audit_events.c)
    ).one()


class AuditRepository:
    """The append-only audit log; keyword-only arguments throughout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_audit_event(
        self, *, organization_id: str, user_id: str, action: str, target_type: str, target_id: str, details: dict
    ) -> domain.AuditEvent:
        with self.engine.begin() as conn:
            row = append_audit_event(
                conn,
                organization_id=organization_id,
                user_id=user_id,
                action=action,
                target_type=target_type,
                target_id=target_id,
                details=details,
            )
        return domain.AuditEvent(**row._mapping)

    def list_audit_events(
        self, *, organization_id: str | None, action_prefix: str, limit: int, cursor: str
    ) -> domain.Page[domain.AuditEvent]:
        """`organization_id=None` lists every organization (platform_admin only; checked by the service)."""
        conds: list[Any] = []
        if organization_id is not None:
            conds.append(A.organization_id == organization_id)
        if action_prefix:
            conds.append(A.action.like(_escape_like(action_prefix) + "%", escape="\\"))
        if cursor:
            conds.append(after(_AUDIT_ORDER, decode_cursor(cursor, "audit", _AUDIT_ORDER)))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_events).where(*conds).order_by(*order_by(_AUDIT_ORDER)).limit(limit + 1)
            ).all()
        rows, next_cursor = cut_page(rows, limit, "audit", _AUDIT_ORDER, lambda r: [r.created_at, r.id])
        return domain.Page(items=[domain.AuditEvent(**r._mapping) for r in rows], next_cursor=next_cursor)
