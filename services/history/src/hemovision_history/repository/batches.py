"""SQL of batches and their items (schema `history`). A batch is reached only through the
caller's organization; an item's prediction is joined with the organization repeated."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_history import domain
from hemovision_history.pagination import SortKey, after, decode_cursor, order_by
from hemovision_history.repository.rows import cut_page, prediction_from
from hemovision_history.tables import batch_items, batches, predictions

P = predictions.c
B = batches.c
I = batch_items.c  # noqa: E741

_BATCH_ORDER = [SortKey(B.created_at, True, "ts"), SortKey(B.id, True, "str")]
_ITEM_ORDER = [SortKey(I.index, False, "int")]


class BatchRepository:
    """Batches, their items and progress; keyword-only arguments throughout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_batch(
        self,
        *,
        organization_id: str,
        user_id: str,
        idempotency_key: str | None,
        total: int,
        sample_id: str,
        slide_id: str,
        note: str,
    ) -> domain.Batch:
        with self.engine.begin() as conn:
            stmt = pg_insert(batches).values(
                id=str(uuid.uuid4()),
                organization_id=organization_id,
                user_id=user_id,
                idempotency_key=idempotency_key,
                status="queued",
                total=total,
                sample_id=sample_id,
                slide_id=slide_id,
                note=note,
            )
            if idempotency_key is not None:
                stmt = stmt.on_conflict_do_nothing(constraint="uq_batches_org_idempotency_key")
            row = conn.execute(stmt.returning(B.id)).first()
            batch_id = row.id if row is not None else conn.execute(
                select(B.id).where(B.organization_id == organization_id, B.idempotency_key == idempotency_key)
            ).scalar_one()
            return self._load_batches(conn, organization_id=organization_id, batch_ids=[batch_id])[0]

    def batch_exists(self, *, organization_id: str, batch_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(
                select(B.id).where(B.organization_id == organization_id, B.id == batch_id)
            ).first() is not None

    def get_batch(self, *, organization_id: str, batch_id: str) -> domain.Batch | None:
        with self.engine.connect() as conn:
            found = self._load_batches(conn, organization_id=organization_id, batch_ids=[batch_id])
        return found[0] if found else None

    def list_batches(self, *, organization_id: str, limit: int, cursor: str) -> domain.Page[domain.Batch]:
        conds = [B.organization_id == organization_id]
        if cursor:
            conds.append(after(_BATCH_ORDER, decode_cursor(cursor, "batches", _BATCH_ORDER)))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(B.id, B.created_at).where(*conds).order_by(*order_by(_BATCH_ORDER)).limit(limit + 1)
            ).all()
            rows, next_cursor = cut_page(rows, limit, "batches", _BATCH_ORDER, lambda r: [r.created_at, r.id])
            items = self._load_batches(conn, organization_id=organization_id, batch_ids=[r.id for r in rows])
        by_id = {b.id: b for b in items}
        return domain.Page(items=[by_id[r.id] for r in rows], next_cursor=next_cursor)

    def _load_batches(self, conn: Connection, *, organization_id: str, batch_ids: list[str]) -> list[domain.Batch]:
        """Batches with progress and label counts, aggregated in SQL."""
        if not batch_ids:
            return []
        rows = conn.execute(
            select(batches).where(B.organization_id == organization_id, B.id.in_(batch_ids))
        ).all()
        result = {
            r.id: domain.Batch(
                id=r.id,
                organization_id=r.organization_id,
                user_id=r.user_id,
                status=r.status,
                total=r.total,
                sample_id=r.sample_id,
                slide_id=r.slide_id,
                note=r.note,
                created_at=r.created_at,
                completed_at=r.completed_at,
            )
            for r in rows
        }
        if not result:
            return []
        ids = list(result)
        progress = conn.execute(
            select(
                I.batch_id,
                func.count().filter(I.status == "succeeded").label("succeeded"),
                func.count().filter(I.status == "failed").label("failed"),
            )
            .where(I.batch_id.in_(ids))
            .group_by(I.batch_id)
        ).all()
        for r in progress:
            result[r.batch_id].succeeded = r.succeeded
            result[r.batch_id].failed = r.failed
        labels = conn.execute(
            select(
                I.batch_id,
                P.label,
                func.count().label("n"),
                func.count().filter(P.needs_review.is_(True)).label("flagged"),
            )
            .select_from(batch_items.join(predictions, I.prediction_id == P.id))
            .where(I.batch_id.in_(ids), I.status == "succeeded", P.organization_id == organization_id)
            .group_by(I.batch_id, P.label)
        ).all()
        for r in labels:
            result[r.batch_id].label_counts[r.label] = r.n
            result[r.batch_id].needs_review += r.flagged
        return [result[i] for i in batch_ids if i in result]

    def record_batch_item(
        self,
        *,
        organization_id: str,
        batch_id: str,
        index: int,
        filename: str,
        status: str,
        prediction_id: str | None,
        error: str,
    ) -> domain.BatchItem | None:
        """Idempotent on (batch, index): the first outcome recorded wins. None when the batch
        is not the organization's. Raises LookupError when the prediction is not."""
        with self.engine.begin() as conn:
            batch = conn.execute(
                select(B.id, B.total, B.status)
                .where(B.organization_id == organization_id, B.id == batch_id)
                .with_for_update()
            ).first()
            if batch is None:
                return None
            existing = conn.execute(select(batch_items).where(I.batch_id == batch_id, I.index == index)).first()
            if existing is None:
                if prediction_id is not None:
                    owner = conn.execute(
                        select(P.batch_id).where(P.organization_id == organization_id, P.id == prediction_id)
                    ).first()
                    if owner is None:
                        raise LookupError(prediction_id)
                    if owner.batch_id is None:
                        conn.execute(update(predictions).where(P.id == prediction_id).values(batch_id=batch_id))
                    elif owner.batch_id != batch_id:
                        raise ValueError("prediction belongs to another batch")
                conn.execute(
                    insert(batch_items).values(
                        batch_id=batch_id,
                        index=index,
                        filename=filename,
                        status=status,
                        prediction_id=prediction_id,
                        error=error,
                    )
                )
                done, succeeded = conn.execute(
                    select(func.count(), func.count().filter(I.status == "succeeded")).where(I.batch_id == batch_id)
                ).one()
                if done >= batch.total:
                    # Every item recorded: completed, or failed when not one item could be classified.
                    conn.execute(
                        update(batches)
                        .where(B.id == batch_id, B.completed_at.is_(None))
                        .values(status="completed" if succeeded else "failed", completed_at=func.now())
                    )
                elif batch.status == "queued":
                    conn.execute(update(batches).where(B.id == batch_id).values(status="running"))
                existing = conn.execute(select(batch_items).where(I.batch_id == batch_id, I.index == index)).one()
        return domain.BatchItem(
            batch_id=existing.batch_id,
            index=existing.index,
            filename=existing.filename,
            status=existing.status,
            prediction_id=existing.prediction_id,
            error=existing.error,
        )

    def list_batch_items(
        self, *, organization_id: str, batch_id: str, limit: int, cursor: str
    ) -> domain.Page[domain.BatchItem] | None:
        conds = [I.batch_id == batch_id]
        if cursor:
            conds.append(after(_ITEM_ORDER, decode_cursor(cursor, "batch_items", _ITEM_ORDER)))
        with self.engine.connect() as conn:
            owned = conn.execute(
                select(B.id).where(B.organization_id == organization_id, B.id == batch_id)
            ).first()
            if owned is None:
                return None
            rows = conn.execute(
                select(batch_items, *[c.label(f"p_{c.key}") for c in predictions.c])
                .select_from(
                    batch_items.outerjoin(
                        predictions, and_(I.prediction_id == P.id, P.organization_id == organization_id)
                    )
                )
                .where(*conds)
                .order_by(I.index)
                .limit(limit + 1)
            ).all()
        rows, next_cursor = cut_page(rows, limit, "batch_items", _ITEM_ORDER, lambda r: [r.index])
        items = []
        for r in rows:
            m = r._mapping
            prediction = prediction_from(m, prefix="p_") if m["p_id"] is not None else None
            items.append(
                domain.BatchItem(
                    batch_id=m["batch_id"],
                    index=m["index"],
                    filename=m["filename"],
                    status=m["status"],
                    prediction_id=m["prediction_id"],
                    error=m["error"],
                    prediction=prediction,
                )
            )
        return domain.Page(items=items, next_cursor=next_cursor)
