"""Predictions: upload, history, detail, images, PDF, review, delete, CSV export, statistics,
the review queue and the reviewed data set."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timezone
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision.reports.v1 import reports_pb2
from hemovision_contracts import CLASS_NAMES

from hemovision_gateway import idempotency
from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import ApiError, ErrorBody, api_error_from_grpc
from hemovision_gateway.pipeline import Upload, run_prediction
from hemovision_gateway.query_params import MAX_VERSION, IsoDay
from hemovision_gateway.schemas import Prediction, PredictionPage, Statistics, timestamp
from hemovision_gateway.security import Ctx, CurrentUser, VerifiedUser
from hemovision_gateway.spreadsheet import spreadsheet_safe

router = APIRouter(prefix="/api/v1", tags=["predictions"])

PREDICTION_EXAMPLE = {
    "id": "0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10", "label": "neutrophil", "confidence": 0.9731,
    "probabilities": {"basophil": 0.001, "eosinophil": 0.004, "erythroblast": 0.002, "immature_granulocyte": 0.012,
                      "lymphocyte": 0.003, "monocyte": 0.004, "neutrophil": 0.9731, "platelet": 0.0009},
    "needs_review": False, "review_reasons": [], "confidence_holds": True,
    "model": {"name": "hemovision", "version": 1},
    "timings_ms": {"decode": 1.2, "pixels": 0.8, "preprocess": 4.1, "model": 18.0, "inference": 21.7, "history": 6.3,
                   "total": 34.2},
    "created_at": "2026-11-22T14:03:11.512000Z", "filename": "cell.jpg", "sample_id": "S-17", "slide_id": "",
    "note": "", "batch_id": None, "image_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "ood_score": 0.12, "temperature": 1.43, "has_image": True, "has_heatmap": True, "review": None,
    "links": {"self": "/api/v1/predictions/0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10",
              "report": "/api/v1/predictions/0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10/report.pdf",
              "image": "/api/v1/predictions/0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10/image.png",
              "heatmap": "/api/v1/predictions/0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10/heatmap.png"},
}


async def read_limited(file: UploadFile, limit: int) -> bytes:
    """Reads at most limit+1 bytes (off the event loop when the upload spilled to disk)."""
    await file.seek(0)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"the file is over the limit of {limit:,} bytes")
    return data


@router.post("/predictions", status_code=201, response_model=Prediction,
             responses={201: {"content": {"application/json": {"example": PREDICTION_EXAMPLE}}},
                        413: {"model": ErrorBody, "description": "file over 10 MB, or a decompression bomb"},
                        415: {"model": ErrorBody, "description": "not a supported image type"},
                        422: {"model": ErrorBody, "description": "unreadable image or missing field"}})
async def create_prediction(
    ctx: Ctx,
    user: VerifiedUser,
    file: Annotated[UploadFile, File(description="The cell image: JPEG, PNG, BMP, TIFF, WebP or DICOM, at most 10 MB")],
    sample_id: Annotated[str, Form(max_length=100)] = "",
    slide_id: Annotated[str, Form(max_length=100)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Prediction | JSONResponse:
    """Classifies one image, explains it (Grad-CAM) and records it in the history."""
    key = idempotency.validate_key(idempotency_key)
    replayed = await idempotency.replay(ctx, "predictions", user.organization_id, user.user_id, key)
    if replayed is not None:
        return replayed
    data = await read_limited(file, ctx.settings.max_image_bytes)
    prediction = await run_prediction(
        ctx.clients, ctx.settings, token=user.token,
        upload=Upload(data=data, filename=file.filename or "", sample_id=sample_id, slide_id=slide_id, note=note),
        idempotency_key=f"api:{key}" if key else str(uuid.uuid4()),
        coalescing=ctx.coalescing,
    )
    if key:
        await idempotency.remember(ctx, "predictions", user.organization_id, user.user_id, key, 201,
                                   prediction.model_dump(mode="json"))
    return prediction  # FastAPI writes it to JSON bytes in pydantic-core, without validating it again


def _ts(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return t


def build_filter(
    label: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    needs_review: bool | None = None,
    model_version: int | None = None,
    sample_id: str | None = None,
    reviewed: bool | None = None,
    batch_id: str | None = None,
) -> history_pb2.PredictionFilter:
    if label and label not in CLASS_NAMES:
        raise ApiError(422, "validation_error", f"label must be one of {', '.join(CLASS_NAMES)}")
    f = history_pb2.PredictionFilter(label=label or "", model_version=model_version or 0,
                                     sample_id=sample_id or "", batch_id=batch_id or "")
    if date_from or date_to:
        rng = common_pb2.TimeRange()
        if date_from:
            rng.start.CopyFrom(_ts(datetime.combine(date_from, time.min)))
        if date_to:  # inclusive day -> exclusive end
            rng.end.CopyFrom(_ts(datetime.combine(date_to, time.max)))
        f.created.CopyFrom(rng)
    if needs_review is not None:
        f.needs_review = needs_review
    if reviewed is not None:
        f.reviewed = reviewed
    return f


class Filters:
    """Query parameters shared by the list, export and statistics endpoints."""

    def __init__(
        self,
        label: Annotated[str | None, Query(description="model label")] = None,
        date_from: Annotated[date | None, IsoDay,
                             Query(alias="from", description="first day (UTC), YYYY-MM-DD")] = None,
        date_to: Annotated[date | None, IsoDay,
                           Query(alias="to", description="last day (UTC), inclusive")] = None,
        needs_review: bool | None = None,
        model_version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
        sample_id: Annotated[str | None, Query(max_length=100)] = None,
        reviewed: bool | None = None,
        batch_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> None:
        self.proto = build_filter(label, date_from, date_to, needs_review, model_version, sample_id, reviewed, batch_id)


@router.get("/predictions", responses={200: {"content": {"application/json": {"example": {
    "items": [PREDICTION_EXAMPLE], "next_cursor": "eyJ0IjoiMjAyNi0xMS0yMlQxNDowMzoxMSJ9"}}}}})
async def list_predictions(
    user: CurrentUser, ctx: Ctx, filters: Annotated[Filters, Depends()],
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str, Query(max_length=500)] = "",
) -> PredictionPage:
    """Your organization's predictions, newest first, filtered, cursor-paginated."""
    reply = await ctx.clients.history.ListPredictions(
        history_pb2.ListPredictionsRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor),
                                           filter=filters.proto),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    return PredictionPage(items=[Prediction.from_pb(p) for p in reply.items], next_cursor=reply.next_cursor or None)


@router.get("/review-queue")
async def review_queue(
    user: CurrentUser, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> PredictionPage:
    """Unreviewed predictions: flagged first, then lowest confidence, oldest first."""
    f = history_pb2.PredictionFilter(reviewed=False)
    reply = await ctx.clients.history.ListPredictions(
        history_pb2.ListPredictionsRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor), filter=f,
                                           review_queue_order=True),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    return PredictionPage(items=[Prediction.from_pb(p) for p in reply.items], next_cursor=reply.next_cursor or None)


EXPORT_COLUMNS = ["id", "created_at", "label", "confidence", "needs_review", "review_reasons", "reviewed_label",
                  "reviewed_by", "reviewed_at", "model_name", "model_version", "sample_id", "slide_id", "batch_id",
                  "filename", *[f"p_{c}" for c in CLASS_NAMES]]


@router.get("/predictions/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def export_csv(user: CurrentUser, ctx: Ctx, filters: Annotated[Filters, Depends()]) -> StreamingResponse:
    """Every prediction matching the filters as CSV (streamed page by page)."""
    metadata = bearer(user.token)
    # Fetch the first page before answering so that errors are proper JSON errors.
    first = await ctx.clients.history.ListPredictions(
        history_pb2.ListPredictionsRequest(page=common_pb2.PageRequest(limit=200), filter=filters.proto),
        metadata=metadata, timeout=ctx.settings.rpc_timeout_s)
    # recorded before the first byte: an export the log does not show never leaves
    await ctx.clients.history.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(
            action="prediction.export", target_type="predictions", target_id=user.organization_id,
            details_json=json.dumps({"format": "csv", "filters": MessageToDict(filters.proto)}, sort_keys=True)),
        metadata=metadata, timeout=ctx.settings.rpc_timeout_s)

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(EXPORT_COLUMNS)
        reply = first
        while True:
            for p in reply.items:
                writer.writerow([spreadsheet_safe(v) for v in [
                    p.id, timestamp(p.created_at), p.label, f"{p.confidence:.6f}", p.needs_review,
                    ";".join(p.review_reasons), p.reviewed_label, p.reviewed_by, timestamp(p.reviewed_at) or "",
                    p.model.name, p.model.version, p.sample_id, p.slide_id, p.batch_id, p.filename,
                    *[f"{p.probabilities.get(c, 0.0):.6f}" for c in CLASS_NAMES]]])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if not reply.next_cursor:
                return
            reply = await ctx.clients.history.ListPredictions(
                history_pb2.ListPredictionsRequest(page=common_pb2.PageRequest(limit=200, cursor=reply.next_cursor),
                                                   filter=filters.proto),
                metadata=metadata, timeout=ctx.settings.rpc_timeout_s)

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="hemovision-predictions.csv"'})


@router.get("/stats")
async def stats(user: CurrentUser, ctx: Ctx, filters: Annotated[Filters, Depends()]) -> Statistics:
    """Totals, class mix, mean confidence, review rate, per-day trend, per-model breakdown, agreement."""
    s = await ctx.clients.history.GetStatistics(history_pb2.GetStatisticsRequest(filter=filters.proto),
                                                metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Statistics.from_pb(s)


@router.get("/datasets/reviewed.zip", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}}})
async def reviewed_dataset(
    user: CurrentUser, ctx: Ctx, val_fraction: Annotated[float, Query(ge=0.0, le=0.9)] = 0.1,
) -> StreamingResponse:
    """Reviewed cells as an ImageFolder ZIP with splits.csv (the training service accepts it)."""
    call = ctx.clients.history.ExportReviewedDataset(
        history_pb2.ExportReviewedDatasetRequest(val_fraction=val_fraction),
        metadata=bearer(user.token), timeout=max(ctx.settings.rpc_timeout_s, 300.0))
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise api_error_from_grpc(exc) from None

    async def chunks() -> AsyncIterator[bytes]:
        if first is not grpc.aio.EOF:
            yield first.data
            while True:
                chunk = await call.read()
                if chunk is grpc.aio.EOF:
                    return
                yield chunk.data

    return StreamingResponse(chunks(), media_type="application/zip",
                             headers={"Content-Disposition": 'attachment; filename="hemovision-reviewed.zip"'})


@router.get("/predictions/{prediction_id}", responses={200: {"content": {"application/json": {"example": PREDICTION_EXAMPLE}}}})
async def get_prediction(prediction_id: str, user: CurrentUser, ctx: Ctx) -> Prediction:
    p = await ctx.clients.history.GetPrediction(history_pb2.GetPredictionRequest(id=prediction_id),
                                                metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Prediction.from_pb(p)


@router.delete("/predictions/{prediction_id}", status_code=204)
async def delete_prediction(prediction_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    """Deletes the record with its stored image and heatmap."""
    await ctx.clients.history.DeletePrediction(history_pb2.DeletePredictionRequest(id=prediction_id),
                                               metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Response(status_code=204)


class ReviewBody(BaseModel):
    label: str = Field(examples=["lymphocyte"])
    comment: str = Field(default="", max_length=2000)


@router.post("/predictions/{prediction_id}/review")
async def review_prediction(prediction_id: str, body: ReviewBody, user: CurrentUser, ctx: Ctx) -> Prediction:
    """Confirms (same label) or corrects the model's label; the record keeps both. The label must
    be one of the classes of the version that classified the cell (history checks it: 422)."""
    p = await ctx.clients.history.ReviewPrediction(
        history_pb2.ReviewPredictionRequest(id=prediction_id, label=body.label, comment=body.comment),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Prediction.from_pb(p)


async def _blob(ctx, user, prediction_id: str, kind: int) -> Response:
    blob = await ctx.clients.history.GetPredictionBlob(
        history_pb2.GetPredictionBlobRequest(prediction_id=prediction_id, kind=kind),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Response(blob.data, media_type=blob.content_type or "image/png",
                    headers={"Cache-Control": "private, max-age=300"})


@router.get("/predictions/{prediction_id}/image.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def prediction_image(prediction_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    """The stored model-input-size cell image."""
    return await _blob(ctx, user, prediction_id, history_pb2.BLOB_KIND_IMAGE)


@router.get("/predictions/{prediction_id}/heatmap.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def prediction_heatmap(prediction_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    """The Grad-CAM heatmap (RGBA PNG, same size as image.png, to lay over it)."""
    return await _blob(ctx, user, prediction_id, history_pb2.BLOB_KIND_HEATMAP)


@router.get("/predictions/{prediction_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def prediction_report(prediction_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    report = await ctx.clients.reports.RenderPredictionReport(
        reports_pb2.RenderPredictionReportRequest(prediction_id=prediction_id),
        metadata=bearer(user.token), timeout=ctx.settings.reports_timeout_s)
    name = report.filename or f"hemovision-prediction-{prediction_id}.pdf"
    return Response(report.pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{_safe_name(name)}"'})


def _safe_name(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "-_.") or "report.pdf"
