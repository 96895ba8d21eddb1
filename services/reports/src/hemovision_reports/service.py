"""Fetches what a report shows from history (with the caller's token) and renders it.
Knows nothing of the gRPC server side; raises errors.py exceptions."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from dataclasses import dataclass

import grpc
from hemovision.history.v1 import history_pb2
from PIL import Image

from hemovision_reports import rendering
from hemovision_reports.clients import HistoryClient, OrganizationNames
from hemovision_reports.errors import BatchNotFound, MissingId, PredictionNotFound
from hemovision_reports.overlay import heatmap_overlay, normalise_png

log = logging.getLogger(__name__)


@dataclass
class Report:
    pdf: bytes
    filename: str
    pages: int


@dataclass(frozen=True)
class Caller:
    token: str
    organization_id: str
    client_ip: str = ""  # the request origin the gateway forwarded (for the audit log)
    user_agent: str = ""


def _thumbnail(png: bytes, side: int = 96) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _safe_id(value: str) -> str:
    """The id as it may appear in a file name (history answers NOT_FOUND for anything else)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return "unknown"


class ReportsService:
    def __init__(self, history: HistoryClient, organizations: OrganizationNames, *, max_flagged_thumbnails: int = 240) -> None:
        self.history = history
        self.organizations = organizations
        self.max_flagged_thumbnails = max_flagged_thumbnails

    async def _organization(self, caller: Caller) -> str:
        name = await self.organizations.name_for(caller.token)
        return name or caller.organization_id or "-"

    async def _audit(self, caller: Caller, target_type: str, target_id: str, *, pages: int) -> None:
        """Every report handed out is in the audit log (`report.download`). Recorded before the
        PDF is returned: when history cannot record it, the report is not handed out either."""
        await self.history.record_audit_event(
            caller.token, action="report.download", target_type=target_type, target_id=target_id,
            details_json=json.dumps({"pages": pages}), client_ip=caller.client_ip, user_agent=caller.user_agent)

    async def prediction_report(self, caller: Caller, prediction_id: str) -> Report:
        if not prediction_id.strip():
            raise MissingId("prediction_id")
        try:
            prediction = await self.history.get_prediction(caller.token, prediction_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise PredictionNotFound(prediction_id) from exc
            raise
        image, heatmap, organization = await asyncio.gather(
            self.history.get_blob(caller.token, prediction.id, history_pb2.BLOB_KIND_IMAGE)
            if prediction.has_image else _none(),
            self.history.get_blob(caller.token, prediction.id, history_pb2.BLOB_KIND_HEATMAP)
            if prediction.has_heatmap else _none(),
            self._organization(caller),
        )
        rendered = await asyncio.to_thread(self._render_prediction, prediction, organization, image, heatmap)
        await self._audit(caller, "prediction", prediction.id, pages=rendered.pages)
        return Report(pdf=rendered.data, filename=f"hemovision-prediction-{_safe_id(prediction.id)}.pdf", pages=rendered.pages)

    @staticmethod
    def _render_prediction(prediction, organization: str, image: bytes | None, heatmap: bytes | None) -> rendering.RenderedPdf:  # noqa: ANN001
        image_png = overlay_png = None
        if image:
            try:
                image_png = normalise_png(image)
                if heatmap:
                    overlay_png = heatmap_overlay(image, heatmap)
            except Exception:  # noqa: BLE001 - a damaged stored image must not cost the whole report
                log.exception("stored image of %s could not be read", prediction.id)
                image_png = overlay_png = None
        return rendering.prediction_report(prediction, organization=organization, image_png=image_png, overlay_png=overlay_png)

    async def batch_report(self, caller: Caller, batch_id: str) -> Report:
        if not batch_id.strip():
            raise MissingId("batch_id")
        try:
            batch = await self.history.get_batch(caller.token, batch_id)
            items = await self.history.list_batch_items(caller.token, batch_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise BatchNotFound(batch_id) from exc
            raise
        flagged_items = [
            i for i in items
            if i.status == history_pb2.BATCH_ITEM_STATUS_SUCCEEDED and i.HasField("prediction") and i.prediction.needs_review
        ]
        shown = flagged_items[: self.max_flagged_thumbnails]
        limiter = asyncio.Semaphore(8)

        async def thumb(item) -> bytes | None:  # noqa: ANN001
            if not item.prediction.has_image:
                return None
            async with limiter:
                data = await self.history.get_blob(caller.token, item.prediction.id, history_pb2.BLOB_KIND_IMAGE)
            if data is None:
                return None
            try:
                return await asyncio.to_thread(_thumbnail, data)
            except Exception:  # noqa: BLE001
                log.exception("thumbnail of %s could not be made", item.prediction.id)
                return None

        thumbs, organization = await asyncio.gather(
            asyncio.gather(*(thumb(i) for i in shown)), self._organization(caller)
        )
        data = rendering.BatchReportData(
            batch=batch,
            organization=organization,
            items=items,
            flagged=[
                rendering.FlaggedCell(index=i.index, filename=i.filename, prediction=i.prediction, thumbnail_png=t)
                for i, t in zip(shown, thumbs, strict=True)
            ],
            thumbnails_left_out=len(flagged_items) - len(shown),
        )
        rendered = await asyncio.to_thread(rendering.batch_report, data)
        await self._audit(caller, "batch", batch.id, pages=rendered.pages)
        return Report(pdf=rendered.data, filename=f"hemovision-batch-{_safe_id(batch.id)}.pdf", pages=rendered.pages)


async def _none() -> None:
    return None
