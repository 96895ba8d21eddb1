"""SQL of the history service. Every query that reads or writes an organization's rows
filters by `organization_id` here; callers cannot forget it. Blocking (psycopg2): the
service runs these in a worker thread."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Integer, and_, cast, delete, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_history import domain
from hemovision_history.pagination import SortKey, after, decode_cursor, encode_cursor, order_by
from hemovision_history.tables import audit_events, batch_items, batches, predictions

P = predictions.c
B = batches.c
I = batch_items.c  # noqa: E741
A = audit_events.c

_PREDICTION_FIELDS = [f.name for f in fields(domain.Prediction)]

NEWEST_FIRST = "newest"
REVIEW_QUEUE = "review_queue"
_PREDICTION_ORDERS: dict[str, list[SortKey]] = {
    NEWEST_FIRST: [SortKey(P.created_at, True, "ts"), SortKey(P.id, True, "str")],
    # Flagged first, then the lowest confidence, then the oldest.
    REVIEW_QUEUE: [
        SortKey(P.needs_review, True, "bool"),
        SortKey(P.confidence, False, "float"),
        SortKey(P.created_at, False, "ts"),
        SortKey(P.id, False, "str"),
    ],
}
_BATCH_ORDER = [SortKey(B.created_at, True, "ts"), SortKey(B.id, True, "str")]
_ITEM_ORDER = [SortKey(I.index, False, "int")]
_AUDIT_ORDER = [SortKey(A.created_at, True, "ts"), SortKey(A.id, True, "str")]


def _prediction(row: Any) -> domain.Prediction:
    m = row._mapping
    return domain.Prediction(**{name: m[name] for name in _PREDICTION_FIELDS})


def _page(rows: list[Any], limit: int, order: str, keys: list[SortKey], key_of) -> tuple[list[Any], str]:  # noqa: ANN001
    """Cuts the limit+1'th row off and builds the cursor of the last row kept."""
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_cursor(order, keys, key_of(rows[-1]))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prediction_conditions(organization_id: str, f: domain.PredictionFilter) -> list[Any]:
    """WHERE terms shared by ListPredictions and GetStatistics; the organization always first."""
    conds: list[Any] = [P.organization_id == organization_id]
    if f.label:
        conds.append(P.label == f.label)
    if f.created_start is not None:
        conds.append(P.created_at >= f.created_start)
    if f.created_end is not None:
        conds.append(P.created_at < f.created_end)
    if f.needs_review is not None:
        conds.append(P.needs_review.is_(f.needs_review))
    if f.model_version:
        conds.append(P.model_version == f.model_version)
    if f.sample_id:
        conds.append(P.sample_id == f.sample_id)
    if f.reviewed is True:
        conds.append(P.reviewed_label.is_not(None))
    elif f.reviewed is False:
        conds.append(P.reviewed_label.is_(None))
    if f.batch_id:
        conds.append(P.batch_id == f.batch_id)
    return conds


_INSERT_PREDICTIONS = (
    pg_insert(predictions)
    .on_conflict_do_nothing(constraint="uq_predictions_org_idempotency_key")
    .returning(*predictions.c)
)


class HistoryRepository:
    """All reads and writes of schema `history`; keyword-only arguments throughout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- predictions -------------------------------------------------------------

    def insert_predictions(self, rows: list[dict]) -> list[tuple[domain.Prediction, bool]]:
        """Inserts rows (dicts of prediction_id, organization_id, user_id, idempotency_key, new,
        image_key, heatmap_key) in one statement and one transaction; in order, (stored record,
        created). A replayed idempotency key, also one repeated inside `rows`, gives the first
        record and False."""
        values = [
            {
                "id": r["prediction_id"],
                "organization_id": r["organization_id"],
                "user_id": r["user_id"],
                "idempotency_key": r["idempotency_key"],
                "image_key": r["image_key"],
                "heatmap_key": r["heatmap_key"],
                **{f.name: getattr(r["new"], f.name) for f in fields(domain.NewPrediction)},
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            # The rows as parameters, not .values(rows): one compiled statement, cached, which
            # SQLAlchemy's insertmanyvalues still sends as one multi-row INSERT .. RETURNING.
            inserted = {str(row.id): _prediction(row) for row in conn.execute(_INSERT_PREDICTIONS, values)}
            replayed = [(v["organization_id"], v["idempotency_key"]) for v in values if v["id"] not in inserted]
            existing = {}
            for org, key in set(replayed):
                row = conn.execute(
                    select(predictions).where(P.organization_id == org, P.idempotency_key == key)
                ).one()
                existing[(org, key)] = _prediction(row)
        return [
            (inserted[v["id"]], True) if v["id"] in inserted else (existing[(v["organization_id"], v["idempotency_key"])], False)
            for v in values
        ]

    def get_prediction(self, *, organization_id: str, prediction_id: str) -> domain.Prediction | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(predictions).where(P.organization_id == organization_id, P.id == prediction_id)
            ).first()
        return _prediction(row) if row else None

    def list_predictions(
        self,
        *,
        organization_id: str,
        filter: domain.PredictionFilter,  # noqa: A002
        limit: int,
        cursor: str,
        review_queue: bool,
    ) -> domain.Page[domain.Prediction]:
        order = REVIEW_QUEUE if review_queue else NEWEST_FIRST
        keys = _PREDICTION_ORDERS[order]
        conds = prediction_conditions(organization_id, filter)
        if cursor:
            conds.append(after(keys, decode_cursor(cursor, order, keys)))
        query = select(predictions).where(*conds).order_by(*order_by(keys)).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        rows, next_cursor = _page(rows, limit, order, keys, lambda r: [getattr(r, k.column.key) for k in keys])
        return domain.Page(items=[_prediction(r) for r in rows], next_cursor=next_cursor)

    def delete_prediction(
        self, *, organization_id: str, prediction_id: str, actor_id: str
    ) -> domain.Prediction | None:
        """Deletes the row and appends the audit event in one transaction; returns the deleted row."""
        with self.engine.begin() as conn:
            row = conn.execute(
                delete(predictions)
                .where(P.organization_id == organization_id, P.id == prediction_id)
                .returning(*predictions.c)
            ).first()
            if row is None:
                return None
            self._audit(
                conn,
                organization_id=organization_id,
                user_id=actor_id,
                action="prediction.delete",
                target_type="prediction",
                target_id=prediction_id,
                details={"label": row.label, "batch_id": row.batch_id},
            )
        return _prediction(row)

    def review_prediction(
        self, *, organization_id: str, prediction_id: str, reviewer_id: str, label: str, comment: str
    ) -> domain.Prediction | None:
        with self.engine.begin() as conn:
            before = conn.execute(
                select(P.label, P.reviewed_label)
                .where(P.organization_id == organization_id, P.id == prediction_id)
                .with_for_update()
            ).first()
            if before is None:
                return None
            row = conn.execute(
                update(predictions)
                .where(P.organization_id == organization_id, P.id == prediction_id)
                .values(reviewed_label=label, reviewed_by=reviewer_id, reviewed_at=func.now(), review_comment=comment)
                .returning(*predictions.c)
            ).one()
            self._audit(
                conn,
                organization_id=organization_id,
                user_id=reviewer_id,
                action="prediction.review",
                target_type="prediction",
                target_id=prediction_id,
                details={
                    "model_label": before.label,
                    "previous_reviewed_label": before.reviewed_label,
                    "reviewed_label": label,
                    "agreed": label == before.label,
                },
            )
        return _prediction(row)

    def reviewed_for_export(
        self,
        *,
        organization_id: str,
        created_start: datetime | None,
        created_end: datetime | None,
        after_id: str | None,
        limit: int,
    ) -> list[tuple[str, str, str, str, int]]:
        """(id, reviewed_label, image_key, model_name, model_version) of reviewed predictions with a
        stored image, by id."""
        conds = [P.organization_id == organization_id, P.reviewed_label.is_not(None), P.image_key.is_not(None)]
        if created_start is not None:
            conds.append(P.created_at >= created_start)
        if created_end is not None:
            conds.append(P.created_at < created_end)
        if after_id is not None:
            conds.append(P.id > after_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(P.id, P.reviewed_label, P.image_key, P.model_name, P.model_version)
                .where(*conds).order_by(P.id).limit(limit)
            ).all()
        return [(r.id, r.reviewed_label, r.image_key, r.model_name, int(r.model_version)) for r in rows]

    # ---- retention -----------------------------------------------------------------

    def claim_expired_blobs(self, *, older_than: datetime, limit: int) -> list[tuple[str, str | None, str | None]]:
        """Clears the blob keys of up to `limit` rows created before `older_than` (all
        organizations: a system task) and returns (id, image_key, heatmap_key) to delete."""
        with self.engine.begin() as conn:
            picked = (
                select(P.id)
                .where(P.created_at < older_than, (P.image_key.is_not(None)) | (P.heatmap_key.is_not(None)))
                .order_by(P.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            old = predictions.alias("old")
            rows = conn.execute(
                update(predictions)
                .where(P.id.in_(picked), P.id == old.c.id)
                .values(image_key=None, heatmap_key=None)
                .returning(P.id, old.c.image_key, old.c.heatmap_key)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    # ---- batches -------------------------------------------------------------------

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
            rows, next_cursor = _page(rows, limit, "batches", _BATCH_ORDER, lambda r: [r.created_at, r.id])
            items = self._load_batches(conn, organization_id=organization_id, batch_ids=[r.id for r in rows])
        by_id = {b.id: b for b in items}
        return domain.Page(items=[by_id[r.id] for r in rows], next_cursor=next_cursor)

    def _load_batches(self, conn, *, organization_id: str, batch_ids: list[str]) -> list[domain.Batch]:  # noqa: ANN001
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
        rows, next_cursor = _page(rows, limit, "batch_items", _ITEM_ORDER, lambda r: [r.index])
        items = []
        for r in rows:
            m = r._mapping
            prediction = None
            if m["p_id"] is not None:
                prediction = domain.Prediction(**{name: m[f"p_{name}"] for name in _PREDICTION_FIELDS})
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

    # ---- statistics ------------------------------------------------------------------

    def statistics(self, *, organization_id: str, filter: domain.PredictionFilter) -> domain.Statistics:  # noqa: A002
        """Every number computed by PostgreSQL (aggregates, GROUP BY, date_trunc)."""
        conds = prediction_conditions(organization_id, filter)
        reviewed = P.reviewed_label.is_not(None)
        with self.engine.connect() as conn:
            totals = conn.execute(
                select(
                    func.count().label("total"),
                    func.coalesce(func.avg(P.confidence), 0.0).label("mean_confidence"),
                    func.coalesce(func.avg(cast(P.needs_review, Integer)), 0.0).label("review_rate"),
                    func.count().filter(reviewed).label("reviewed"),
                ).where(*conds)
            ).one()
            labels = conn.execute(
                select(P.label, func.count().label("n")).where(*conds).group_by(P.label).order_by(P.label)
            ).all()
            day = func.date_trunc(literal_column("'day'"), func.timezone(literal_column("'UTC'"), P.created_at)).label("day")
            daily = conn.execute(
                select(day, func.count().label("n"), func.count().filter(P.needs_review.is_(True)).label("flagged"))
                .where(*conds)
                .group_by(day)
                .order_by(day)
            ).all()
            models = conn.execute(
                select(P.model_name, P.model_version, func.count().label("n"), func.avg(P.confidence).label("mean"))
                .where(*conds)
                .group_by(P.model_name, P.model_version)
                .order_by(P.model_name, P.model_version)
            ).all()
            agreement = conn.execute(
                select(
                    P.label,
                    func.count().label("reviewed"),
                    func.count().filter(P.reviewed_label == P.label).label("agreed"),
                )
                .where(*conds, reviewed)
                .group_by(P.label)
                .order_by(P.label)
            ).all()
        return domain.Statistics(
            total=totals.total,
            label_counts={r.label: r.n for r in labels},
            mean_confidence=float(totals.mean_confidence),
            review_rate=float(totals.review_rate),
            reviewed=totals.reviewed,
            daily=[domain.DailyCount(day=r.day.strftime("%Y-%m-%d"), count=r.n, needs_review=r.flagged) for r in daily],
            by_model=[
                domain.ModelCount(model_name=r.model_name, model_version=r.model_version, count=r.n, mean_confidence=float(r.mean))
                for r in models
            ],
            agreement=[domain.ClassAgreement(label=r.label, reviewed=r.reviewed, agreed=r.agreed) for r in agreement],
        )

    # ---- audit -------------------------------------------------------------------------

    @staticmethod
    def _audit(conn, *, organization_id: str, user_id: str, action: str, target_type: str, target_id: str, details: dict) -> Any:  # noqa: ANN001
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

    def record_audit_event(
        self, *, organization_id: str, user_id: str, action: str, target_type: str, target_id: str, details: dict
    ) -> domain.AuditEvent:
        with self.engine.begin() as conn:
            row = self._audit(
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
        rows, next_cursor = _page(rows, limit, "audit", _AUDIT_ORDER, lambda r: [r.created_at, r.id])
        return domain.Page(items=[domain.AuditEvent(**r._mapping) for r in rows], next_cursor=next_cursor)
