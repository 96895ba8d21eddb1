"""SQL of the audit log (schema `history`, table audit_events).

The table is append-only in the database itself (migration 0002): UPDATE and TRUNCATE are refused
by a trigger for every role, DELETE for every role but AUDIT_RETENTION_ROLE. This module therefore
only INSERTs and SELECTs, except `delete_audit_events_before`, which the retention job runs inside a
`SET LOCAL ROLE` transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_history import domain
from hemovision_history.pagination import SortKey, after, decode_cursor, order_by
from hemovision_history.repository.rows import cut_page
from hemovision_history.tables import AUDIT_RETENTION_ROLE, audit_events

A = audit_events.c
_AUDIT_ORDER = [SortKey(A.created_at, True, "ts"), SortKey(A.id, True, "str")]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def append_audit_event(conn: Connection, *, organization_id: str, user_id: str, action: str, target_type: str,
                       target_id: str, details: dict, client_ip: str = "", source: str = "history") -> Any:
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
            client_ip=client_ip,
            source=source,
        )
        .returning(*audit_events.c)
    ).one()


def audit_conditions(organization_id: str | None, f: domain.AuditFilter) -> list[Any]:
    """`organization_id=None`: every organization (platform_admin; the service decides)."""
    conds: list[Any] = []
    if organization_id is not None:
        conds.append(A.organization_id == organization_id)
    if f.action_prefix:
        conds.append(A.action.like(_escape_like(f.action_prefix) + "%", escape="\\"))
    if f.user_id:
        conds.append(A.user_id == f.user_id)
    if f.target_id:
        conds.append(A.target_id == f.target_id)
    if f.created_start is not None:
        conds.append(A.created_at >= f.created_start)
    if f.created_end is not None:
        conds.append(A.created_at < f.created_end)
    return conds


class AuditRepository:
    """The append-only audit log; keyword-only arguments throughout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_audit_event(
        self, *, organization_id: str, user_id: str, action: str, target_type: str, target_id: str, details: dict,
        client_ip: str = "", source: str = "history",
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
                client_ip=client_ip,
                source=source,
            )
        return domain.AuditEvent(**row._mapping)

    def append_audit_events(self, *, events: list[domain.NewAuditEvent], source: str) -> list[str]:
        """One INSERT ... ON CONFLICT (id) DO NOTHING: a redelivered event is stored once. Returns
        every requested id (stored now or before)."""
        if not events:
            return []
        rows = [
            {
                "id": e.id,
                "organization_id": e.organization_id,
                "user_id": e.user_id,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "details": e.details,
                "client_ip": e.client_ip,
                "source": source,
                # now() when the writer sent no time (a literal, so one statement serves both).
                "created_at": e.occurred_at if e.occurred_at is not None else func.now(),
            }
            for e in events
        ]
        with self.engine.begin() as conn:
            conn.execute(pg_insert(audit_events).values(rows).on_conflict_do_nothing(index_elements=[A.id]))
        return list(dict.fromkeys(e.id for e in events))

    def list_audit_events(
        self, *, organization_id: str | None, filter: domain.AuditFilter, limit: int, cursor: str,  # noqa: A002
    ) -> domain.Page[domain.AuditEvent]:
        """`organization_id=None` lists every organization (platform_admin only; checked by the service)."""
        conds = audit_conditions(organization_id, filter)
        if cursor:
            conds.append(after(_AUDIT_ORDER, decode_cursor(cursor, "audit", _AUDIT_ORDER)))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_events).where(*conds).order_by(*order_by(_AUDIT_ORDER)).limit(limit + 1)
            ).all()
        rows, next_cursor = cut_page(rows, limit, "audit", _AUDIT_ORDER, lambda r: [r.created_at, r.id])
        return domain.Page(items=[domain.AuditEvent(**r._mapping) for r in rows], next_cursor=next_cursor)


def delete_audit_events_before(engine: Engine, *, older_than: datetime, limit: int) -> int:
    """Deletes up to `limit` audit events created before `older_than`, as AUDIT_RETENTION_ROLE
    (`SET LOCAL ROLE`: the engine's login must be that role or a member of it). Any other role is
    refused by the append-only trigger. Returns how many rows went."""
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL ROLE {AUDIT_RETENTION_ROLE}"))
        picked = select(A.id).where(A.created_at < older_than).order_by(A.created_at).limit(limit).scalar_subquery()
        return conn.execute(delete(audit_events).where(A.id.in_(picked))).rowcount
