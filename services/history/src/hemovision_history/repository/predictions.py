"""SQL of prediction records (schema `history`): record, read, list, delete, review, the
reviewed cells for export and the statistics (the retention purge: repository/retention.py). Every query that reads or
writes an organization's rows filters by `organization_id` here; callers cannot forget it.
Blocking (psycopg2): the services run these in a worker thread."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Integer, cast, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_history import domain
from hemovision_history.pagination import SortKey, after, decode_cursor, order_by
from hemovision_history.repository.audit import append_audit_event
from hemovision_history.repository.rows import cut_page, prediction_from
from hemovision_history.tables import predictions

P = predictions.c

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


class PredictionRepository:
    """All reads and writes of prediction rows; keyword-only arguments throughout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
            inserted = {str(row.id): prediction_from(row._mapping) for row in conn.execute(_INSERT_PREDICTIONS, values)}
            replayed = [(v["organization_id"], v["idempotency_key"]) for v in values if v["id"] not in inserted]
            existing = {}
            for org, key in set(replayed):
                row = conn.execute(
                    select(predictions).where(P.organization_id == org, P.idempotency_key == key)
                ).one()
                existing[(org, key)] = prediction_from(row._mapping)
        return [
            (inserted[v["id"]], True) if v["id"] in inserted else (existing[(v["organization_id"], v["idempotency_key"])], False)
            for v in values
        ]

    def get_prediction(self, *, organization_id: str, prediction_id: str) -> domain.Prediction | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(predictions).where(P.organization_id == organization_id, P.id == prediction_id)
            ).first()
        return prediction_from(row._mapping) if row else None

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
        rows, next_cursor = cut_page(rows, limit, order, keys, lambda r: [getattr(r, k.column.key) for k in keys])
        return domain.Page(items=[prediction_from(r._mapping) for r in rows], next_cursor=next_cursor)

    def delete_prediction(
        self, *, organization_id: str, prediction_id: str, actor_id: str, client_ip: str = ""
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
            append_audit_event(
                conn,
                organization_id=organization_id,
                user_id=actor_id,
                action="prediction.delete",
                target_type="prediction",
                target_id=prediction_id,
                details={"label": row.label, "batch_id": row.batch_id},
                client_ip=client_ip,
            )
        return prediction_from(row._mapping)

    def review_prediction(
        self, *, organization_id: str, prediction_id: str, reviewer_id: str, label: str, comment: str,
        client_ip: str = "",
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
            append_audit_event(
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
                client_ip=client_ip,
            )
        return prediction_from(row._mapping)

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

