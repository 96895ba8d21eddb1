"""GET /api/v1/drift: how an organization's recent cells compare with its model version's reference."""

from __future__ import annotations

from typing import Literal

from hemovision.history.v1 import history_pb2
from pydantic import Field

from hemovision_gateway.schemas.common import ResponseModel, timestamp

DriftStatus = Literal["ok", "watch", "drifting", "too_few_cells", "no_reference"]


class DriftHistogram(ResponseModel):
    """Live and reference shares per bin (each list sums to 1)."""

    component: Literal["ood_score", "confidence", "class_mix"]
    bins: list[str] = Field(description="class names for class_mix, '[lo, hi)' ranges otherwise")
    live: list[float] = Field(description="the organization's share of cells per bin in the window")
    reference: list[float] = Field(description="the model version's share per bin on PBC val")

    @classmethod
    def from_pb(cls, h: history_pb2.DriftHistogram) -> DriftHistogram:
        return cls(component=h.component, bins=list(h.bins), live=[round(v, 6) for v in h.live],
                   reference=[round(v, 6) for v in h.reference])


class DriftComponent(ResponseModel):
    component: Literal["ood_score", "confidence", "class_mix"] = Field(
        description="ood_score: how unlike the training cells the images look to the model; confidence: "
                    "its top-class confidence; class_mix: the share of each predicted class")
    score: float = Field(ge=0, description="population stability index against the reference (0 = the same)")
    status: DriftStatus


class OrganizationDrift(ResponseModel):
    organization_id: str
    model_name: str = Field(examples=["hemovision"])
    model_version: int = Field(examples=[1])
    cells: int = Field(description="cells in the window classified by this version")
    score: float = Field(description="the larger of the ood_score and confidence scores (0 without a score)")
    status: DriftStatus
    components: list[DriftComponent]
    histograms: list[DriftHistogram] = Field(
        description="live beside reference; only for the organization's own members (never for platform staff)")
    review_rate: float = Field(ge=0, le=1, description="share of the window's cells flagged for review")
    last_cell_at: str | None = None

    @classmethod
    def from_pb(cls, i: history_pb2.OrganizationDrift) -> OrganizationDrift:
        return cls(organization_id=i.organization_id, model_name=i.model_name, model_version=i.model_version,
                   cells=i.cells, score=round(i.score, 6), status=i.status,
                   components=[DriftComponent(component=c.component, score=round(c.score, 6), status=c.status)
                               for c in i.components],
                   histograms=[DriftHistogram.from_pb(h) for h in i.histograms],
                   review_rate=round(i.review_rate, 6), last_cell_at=timestamp(i.last_cell_at))


class DriftReport(ResponseModel):
    """Members: their organization's entries (most cells first). Platform staff: every organization's
    scores and counts, no histograms."""

    items: list[OrganizationDrift]
    window_start: str | None = Field(description="cells created at or after this time count")
    window_days: int = Field(examples=[7])
    max_cells: int = Field(examples=[5000], description="at most this many newest cells per organization")
    min_cells: int = Field(examples=[200], description="fewer cells: no score (status too_few_cells)")
    watch_threshold: float = Field(examples=[0.1])
    drifting_threshold: float = Field(examples=[0.25])

    @classmethod
    def from_pb(cls, r: history_pb2.DriftReport) -> DriftReport:
        return cls(items=[OrganizationDrift.from_pb(i) for i in r.items], window_start=timestamp(r.window_start),
                   window_days=r.window_days, max_cells=r.max_cells, min_cells=r.min_cells,
                   watch_threshold=r.watch_threshold, drifting_threshold=r.drifting_threshold)
