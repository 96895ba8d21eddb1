"""SQL of retention: the per-organization policies and the purge's claims and deletions.

The purge is a system task across organizations, but each statement here either works on one
organization (`organization_id = :org`) or joins the organization's own policy row, so one
organization's policy never decides about another's rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_history.repository.audit import append_audit_event
from hemovision_history.tables import batches, predictions, retention_policies

P = predictions.c
B = batches.c
R = retention_policies.c


class RetentionRepository:
    """Keyword-only arguments throughout; blocking (run in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- policies --------------------------------------------------------------------

    def get_policy(self, *, organization_id: str) -> Any | None:
        with self.engine.connect() as conn:
            return conn.execute(select(retention_policies).where(R.organization_id == organization_id)).first()

    def put_policy(
        self, *, organization_id: str, blob_days: int | None, record_days: int | None, updated_by: str,
        client_ip: str,
    ) -> Any:
        """Upserts the policy and appends `retention.update` (before and after) in one transaction."""
        with self.engine.begin() as conn:
            before = conn.execute(
                select(R.blob_days, R.record_days).where(R.organization_id == organization_id).with_for_update()
            ).first()
            values = {"blob_days": blob_days, "record_days": record_days, "updated_by": updated_by,
                      "updated_at": func.now()}
            row = conn.execute(
                pg_insert(retention_policies)
                .values(organization_id=organization_id, **values)
                .on_conflict_do_update(index_elements=[R.organization_id], set_=values)
                .returning(*retention_policies.c)
            ).one()
            append_audit_event(
                conn,
                organization_id=organization_id,
                user_id=updated_by,
                action="retention.update",
                target_type="retention_policy",
                target_id=organization_id,
                details={
                    "before": {"blob_days": before.blob_days, "record_days": before.record_days} if before else None,
                    "after": {"blob_days": blob_days, "record_days": record_days},
                },
                client_ip=client_ip,
            )
        return row

    def record_policies(self) -> list[tuple[str, int]]:
        """(organization, record_days) of every organization that deletes whole records."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(R.organization_id, R.record_days).where(R.record_days.is_not(None)).order_by(R.organization_id)
            ).all()
        return [(r[0], r[1]) for r in rows]

    # ---- the purge -------------------------------------------------------------------

    def claim_expired_blobs(
        self, *, now: datetime, default_days: int, limit: int,
    ) -> list[tuple[str, str, str | None, str | None]]:
        """Clears the blob keys of up to `limit` rows older than their organization's blob
        retention (its policy's blob_days, else `default_days`; 0 = keep) and returns
        (organization_id, id, image_key, heatmap_key) of the blobs to delete. Rows locked by another
        purger are skipped."""
        days = func.coalesce(R.blob_days, default_days)
        with self.engine.begin() as conn:
            picked = (
                select(P.id)
                .select_from(predictions.outerjoin(retention_policies, R.organization_id == P.organization_id))
                .where(
                    (P.image_key.is_not(None)) | (P.heatmap_key.is_not(None)),
                    days > 0,
                    P.created_at < literal(now) - func.make_interval(0, 0, 0, days),
                )
                .order_by(P.created_at)
                .limit(limit)
                .with_for_update(of=predictions, skip_locked=True)
                .scalar_subquery()
            )
            old = predictions.alias("old")
            rows = conn.execute(
                update(predictions)
                .where(P.id.in_(picked), P.id == old.c.id)
                .values(image_key=None, heatmap_key=None)
                .returning(P.organization_id, P.id, old.c.image_key, old.c.heatmap_key)
            ).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def delete_expired_records(
        self, *, organization_id: str, older_than: datetime, limit: int,
    ) -> list[tuple[str, str | None, str | None]]:
        """Deletes up to `limit` of the organization's prediction records created before
        `older_than`; returns (id, image_key, heatmap_key) so that their blobs can go too."""
        with self.engine.begin() as conn:
            picked = (
                select(P.id)
                .where(P.organization_id == organization_id, P.created_at < older_than)
                .order_by(P.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            rows = conn.execute(
                delete(predictions).where(P.id.in_(picked)).returning(P.id, P.image_key, P.heatmap_key)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_expired_batches(self, *, organization_id: str, older_than: datetime) -> int:
        """Deletes the organization's batches created before `older_than` that no longer hold a
        prediction (their items go with them)."""
        with self.engine.begin() as conn:
            return conn.execute(
                delete(batches).where(
                    B.organization_id == organization_id,
                    B.created_at < older_than,
                    ~exists().where(and_(P.batch_id == B.id)),
                )
            ).rowcount
