"""HistoryServicer: protobuf <-> domain objects only; everything else is in service/."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from google.protobuf import empty_pb2, timestamp_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_database import is_connection_error
from hemovision_grpc_server import ServiceError, Unavailable
from hemovision_telemetry.metrics import BATCH_ITEMS
from hemovision_contracts import origin_from_metadata
from hemovision_tokens import current_principal

from hemovision_history import domain
from hemovision_history.errors import DatabaseUnavailable
from hemovision_history.service import HistoryService
from hemovision_history.service.audit import metadata_client_ip
from hemovision_history.service.drift import DriftReport

_BATCH_STATUS = {
    "queued": history_pb2.BATCH_STATUS_QUEUED,
    "running": history_pb2.BATCH_STATUS_RUNNING,
    "completed": history_pb2.BATCH_STATUS_COMPLETED,
    "failed": history_pb2.BATCH_STATUS_FAILED,
}
_ITEM_STATUS = {
    "succeeded": history_pb2.BATCH_ITEM_STATUS_SUCCEEDED,
    "failed": history_pb2.BATCH_ITEM_STATUS_FAILED,
}
_ITEM_STATUS_IN = {v: k for k, v in _ITEM_STATUS.items()}
_BLOB_KIND = {history_pb2.BLOB_KIND_IMAGE: "image", history_pb2.BLOB_KIND_HEATMAP: "heatmap"}


def _caller(context) -> domain.Caller:  # noqa: ANN001
    """The verified caller, with the client IP of the request-origin metadata (informational)."""
    p = current_principal()
    client_ip, _user_agent = origin_from_metadata(context.invocation_metadata())
    return domain.Caller(user_id=p.user_id, organization_id=p.organization_id, role=p.role,
                         client_ip=metadata_client_ip(client_ip), acting_service=p.acting_service)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _from_ts(msg, field: str) -> datetime | None:  # noqa: ANN001
    if not msg.HasField(field):
        return None
    return getattr(msg, field).ToDatetime(tzinfo=UTC)


def prediction_to_pb(p: domain.Prediction) -> history_pb2.Prediction:
    return history_pb2.Prediction(
        id=p.id,
        organization_id=p.organization_id,
        user_id=p.user_id,
        label=p.label,
        confidence=p.confidence,
        probabilities=p.probabilities,
        needs_review=p.needs_review,
        review_reasons=p.review_reasons,
        model=common_pb2.ModelRef(name=p.model_name, version=p.model_version),
        timings_ms=p.timings_ms,
        image_sha256=p.image_sha256,
        filename=p.filename,
        sample_id=p.sample_id,
        slide_id=p.slide_id,
        note=p.note,
        batch_id=p.batch_id or "",
        has_image=p.image_key is not None,
        has_heatmap=p.heatmap_key is not None,
        reviewed_label=p.reviewed_label or "",
        reviewed_by=p.reviewed_by or "",
        reviewed_at=_ts(p.reviewed_at),
        review_comment=p.review_comment or "",
        created_at=_ts(p.created_at),
        temperature=p.temperature,
        ood_score=p.ood_score,
    )


def new_prediction_from_pb(p: history_pb2.Prediction) -> domain.NewPrediction:
    return domain.NewPrediction(
        label=p.label,
        confidence=p.confidence,
        probabilities=dict(p.probabilities),
        needs_review=p.needs_review,
        review_reasons=list(p.review_reasons),
        model_name=p.model.name,
        model_version=p.model.version,
        temperature=p.temperature,
        ood_score=p.ood_score,
        timings_ms=dict(p.timings_ms),
        image_sha256=p.image_sha256,
        filename=p.filename,
        sample_id=p.sample_id,
        slide_id=p.slide_id,
        note=p.note,
        batch_id=p.batch_id,
    )


def filter_from_pb(f: history_pb2.PredictionFilter) -> domain.PredictionFilter:
    return domain.PredictionFilter(
        label=f.label,
        created_start=_from_ts(f.created, "start"),
        created_end=_from_ts(f.created, "end"),
        needs_review=f.needs_review if f.HasField("needs_review") else None,
        model_version=f.model_version,
        sample_id=f.sample_id,
        reviewed=f.reviewed if f.HasField("reviewed") else None,
        batch_id=f.batch_id,
    )


def batch_to_pb(b: domain.Batch) -> history_pb2.Batch:
    return history_pb2.Batch(
        id=b.id,
        organization_id=b.organization_id,
        user_id=b.user_id,
        status=_BATCH_STATUS.get(b.status, history_pb2.BATCH_STATUS_UNSPECIFIED),
        total=b.total,
        succeeded=b.succeeded,
        failed=b.failed,
        sample_id=b.sample_id,
        slide_id=b.slide_id,
        note=b.note,
        created_at=_ts(b.created_at),
        completed_at=_ts(b.completed_at),
        label_counts=b.label_counts,
        needs_review=b.needs_review,
    )


def item_to_pb(i: domain.BatchItem) -> history_pb2.BatchItem:
    return history_pb2.BatchItem(
        batch_id=i.batch_id,
        index=i.index,
        filename=i.filename,
        status=_ITEM_STATUS.get(i.status, history_pb2.BATCH_ITEM_STATUS_UNSPECIFIED),
        prediction_id=i.prediction_id or "",
        error=i.error,
        prediction=prediction_to_pb(i.prediction) if i.prediction else None,
    )


def audit_to_pb(e: domain.AuditEvent) -> history_pb2.AuditEvent:
    return history_pb2.AuditEvent(
        id=e.id,
        organization_id=e.organization_id,
        user_id=e.user_id,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        details_json=json.dumps(e.details, sort_keys=True),
        created_at=_ts(e.created_at),
        client_ip=e.client_ip,
        source=e.source,
    )


def audit_filter_from_pb(r: history_pb2.ListAuditEventsRequest) -> domain.AuditFilter:
    return domain.AuditFilter(
        action_prefix=r.action_prefix,
        user_id=r.user_id,
        target_id=r.target_id,
        created_start=_from_ts(r.created, "start"),
        created_end=_from_ts(r.created, "end"),
    )


def audit_input_from_pb(e: history_pb2.AuditEventInput) -> domain.NewAuditEvent:
    return domain.NewAuditEvent(
        id=e.id,
        organization_id=e.organization_id,
        user_id=e.user_id,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        details_json=e.details_json,
        occurred_at=_from_ts(e, "occurred_at"),
        client_ip=e.client_ip,
    )


def retention_to_pb(p: domain.RetentionPolicy) -> history_pb2.RetentionPolicy:
    return history_pb2.RetentionPolicy(
        organization_id=p.organization_id,
        blob_days=p.blob_days,
        record_days=p.record_days,
        default_blob_days=p.default_blob_days,
        effective_blob_days=p.effective_blob_days,
        audit_retention_days=p.audit_retention_days,
        updated_by=p.updated_by,
        updated_at=_ts(p.updated_at),
    )


def statistics_to_pb(s: domain.Statistics) -> history_pb2.Statistics:
    return history_pb2.Statistics(
        total=s.total,
        label_counts=s.label_counts,
        mean_confidence=s.mean_confidence,
        review_rate=s.review_rate,
        reviewed=s.reviewed,
        daily=[history_pb2.DailyCount(day=d.day, count=d.count, needs_review=d.needs_review) for d in s.daily],
        by_model=[
            history_pb2.ModelCount(
                model=common_pb2.ModelRef(name=m.model_name, version=m.model_version),
                count=m.count,
                mean_confidence=m.mean_confidence,
            )
            for m in s.by_model
        ],
        agreement=[history_pb2.ClassAgreement(label=a.label, reviewed=a.reviewed, agreed=a.agreed) for a in s.agreement],
    )


def _outages_are_retryable(cls: type) -> type:
    """Every RPC of `cls`: PostgreSQL lost or refusing connections (a restart, a failover) answers
    UNAVAILABLE "try again" (DatabaseUnavailable), never INTERNAL — reads included, not only the
    record path. Other errors pass untouched to the one error mapping (hemovision_grpc_server)."""

    def unary(method):
        @functools.wraps(method)
        async def wrapped(self, request, context):
            try:
                return await method(self, request, context)
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailable() from exc
                raise

        return wrapped

    def stream(method):
        @functools.wraps(method)
        async def wrapped(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailable() from exc
                raise

        return wrapped

    for name, method in list(vars(cls).items()):
        if name[:1].isupper() and callable(method):
            setattr(cls, name, stream(method) if inspect.isasyncgenfunction(method) else unary(method))
    return cls


@_outages_are_retryable
class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    def __init__(self, service: HistoryService) -> None:
        self.service = service

    async def RecordPrediction(self, request, context):  # noqa: ANN001, N802
        stored = await self.service.predictions.record(
            _caller(context),
            idempotency_key=request.idempotency_key,
            prediction=new_prediction_from_pb(request.prediction),
            image_png=request.image_png,
            heatmap_png=request.heatmap_png,
        )
        return prediction_to_pb(stored)

    async def RecordPredictions(self, request, context):  # noqa: ANN001, N802
        outcomes = await self.service.predictions.record_many(
            _caller(context),
            [
                {
                    "idempotency_key": item.idempotency_key,
                    "prediction": new_prediction_from_pb(item.prediction),
                    "image_png": item.image_png,
                    "heatmap_png": item.heatmap_png,
                }
                for item in request.items
            ],
        )
        response = history_pb2.RecordPredictionsResponse()
        for outcome in outcomes:
            if isinstance(outcome, ServiceError):
                response.results.add(error=history_pb2.ItemError(code=outcome.code.value[0], message=outcome.message))
            else:
                response.results.add(prediction=prediction_to_pb(outcome))
        return response

    async def GetPrediction(self, request, context):  # noqa: ANN001, N802
        return prediction_to_pb(await self.service.predictions.get(_caller(context), request.id))

    async def ListPredictions(self, request, context):  # noqa: ANN001, N802
        page = await self.service.predictions.page(
            _caller(context),
            filter=filter_from_pb(request.filter),
            limit=request.page.limit,
            cursor=request.page.cursor,
            review_queue=request.review_queue_order,
        )
        return history_pb2.ListPredictionsResponse(
            items=[prediction_to_pb(p) for p in page.items], next_cursor=page.next_cursor
        )

    async def DeletePrediction(self, request, context):  # noqa: ANN001, N802
        await self.service.predictions.delete(_caller(context), request.id)
        return empty_pb2.Empty()

    async def ReviewPrediction(self, request, context):  # noqa: ANN001, N802
        reviewed = await self.service.review.record(
            _caller(context), request.id, label=request.label, comment=request.comment
        )
        return prediction_to_pb(reviewed)

    async def GetPredictionBlob(self, request, context):  # noqa: ANN001, N802
        kind = _BLOB_KIND.get(request.kind, "")
        data = await self.service.predictions.blob(_caller(context), request.prediction_id, kind)
        return history_pb2.Blob(content_type="image/png", data=data)

    async def CreateBatch(self, request, context):  # noqa: ANN001, N802
        batch = await self.service.batches.create(
            _caller(context),
            idempotency_key=request.idempotency_key,
            total=request.total,
            sample_id=request.sample_id,
            slide_id=request.slide_id,
            note=request.note,
        )
        return batch_to_pb(batch)

    async def GetBatch(self, request, context):  # noqa: ANN001, N802
        return batch_to_pb(await self.service.batches.get(_caller(context), request.id))

    async def ListBatches(self, request, context):  # noqa: ANN001, N802
        page = await self.service.batches.page(_caller(context), limit=request.page.limit, cursor=request.page.cursor)
        return history_pb2.ListBatchesResponse(items=[batch_to_pb(b) for b in page.items], next_cursor=page.next_cursor)

    async def RecordBatchItem(self, request, context):  # noqa: ANN001, N802
        item = request.item
        recorded = await self.service.batches.record_item(
            _caller(context),
            batch_id=item.batch_id,
            index=item.index,
            filename=item.filename,
            status=_ITEM_STATUS_IN.get(item.status, ""),
            prediction_id=item.prediction_id,
            error=item.error,
        )
        BATCH_ITEMS.labels(recorded.status).inc()
        return item_to_pb(recorded)

    async def ListBatchItems(self, request, context):  # noqa: ANN001, N802
        page = await self.service.batches.item_page(
            _caller(context), request.batch_id, limit=request.page.limit, cursor=request.page.cursor
        )
        return history_pb2.ListBatchItemsResponse(items=[item_to_pb(i) for i in page.items], next_cursor=page.next_cursor)

    async def GetStatistics(self, request, context):  # noqa: ANN001, N802
        return statistics_to_pb(await self.service.predictions.statistics(_caller(context), filter_from_pb(request.filter)))

    async def RecordAuditEvent(self, request, context):  # noqa: ANN001, N802
        event = await self.service.audit.record(
            _caller(context),
            action=request.action,
            target_type=request.target_type,
            target_id=request.target_id,
            details_json=request.details_json,
        )
        return audit_to_pb(event)

    async def ListAuditEvents(self, request, context):  # noqa: ANN001, N802
        page = await self.service.audit.page(
            _caller(context), filter=audit_filter_from_pb(request), limit=request.page.limit, cursor=request.page.cursor
        )
        return history_pb2.ListAuditEventsResponse(items=[audit_to_pb(e) for e in page.items], next_cursor=page.next_cursor)

    async def AppendAuditEvents(self, request, context):  # noqa: ANN001, N802
        ids = await self.service.audit.append(_caller(context), [audit_input_from_pb(e) for e in request.events])
        return history_pb2.AppendAuditEventsResponse(ids=ids)

    async def GetRetentionPolicy(self, request, context):  # noqa: ANN001, N802
        return retention_to_pb(await self.service.retention.get_policy(_caller(context)))

    async def SetRetentionPolicy(self, request, context):  # noqa: ANN001, N802
        policy = await self.service.retention.set_policy(
            _caller(context),
            blob_days=request.blob_days if request.HasField("blob_days") else None,
            record_days=request.record_days if request.HasField("record_days") else None,
        )
        return retention_to_pb(policy)

    async def ExportReviewedDataset(self, request, context) -> AsyncIterator[history_pb2.DataChunk]:  # noqa: ANN001, N802
        chunks = self.service.review.export_dataset(
            _caller(context),
            created_start=_from_ts(request.created, "start"),
            created_end=_from_ts(request.created, "end"),
            val_fraction=request.val_fraction,
        )
        async for chunk in chunks:
            yield history_pb2.DataChunk(data=chunk)

    async def GetDrift(self, request, context):  # noqa: ANN001, N802
        if self.service.drift is None:
            raise Unavailable("drift is not configured in this process")
        return drift_report_to_pb(await self.service.drift.report(_caller(context)))


def drift_report_to_pb(report: DriftReport) -> history_pb2.DriftReport:
    return history_pb2.DriftReport(
        items=[
            history_pb2.OrganizationDrift(
                organization_id=i.organization_id, model_name=i.model_name, model_version=i.model_version,
                cells=i.cells, score=i.score, status=i.status, review_rate=i.review_rate,
                last_cell_at=_ts(i.last_cell_at),
                components=[history_pb2.DriftComponent(component=c.component, score=c.score, status=c.status)
                            for c in i.components],
                histograms=[history_pb2.DriftHistogram(component=h.component, bins=h.bins, live=h.live,
                                                       reference=h.reference) for h in i.histograms],
            )
            for i in report.items
        ],
        window_start=_ts(report.window_start), window_days=report.window_days, max_cells=report.max_cells,
        min_cells=report.min_cells, watch_threshold=report.watch_threshold,
        drifting_threshold=report.drifting_threshold,
    )


__all__ = ["HistoryServicer", "drift_report_to_pb", "prediction_to_pb"]
