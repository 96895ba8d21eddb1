""""Adapt to our lab" runs and the version that serves an organization."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway.schemas.common import ResponseModel, timestamp

AdaptationStatus = Literal["queued", "running", "succeeded", "rejected", "failed", "cancelled"]
ADAPTATION_STATUS: dict[int, AdaptationStatus] = {
    training_pb2.ADAPTATION_STATUS_QUEUED: "queued",
    training_pb2.ADAPTATION_STATUS_RUNNING: "running",
    training_pb2.ADAPTATION_STATUS_SUCCEEDED: "succeeded",
    training_pb2.ADAPTATION_STATUS_REJECTED: "rejected",
    training_pb2.ADAPTATION_STATUS_FAILED: "failed",
    training_pb2.ADAPTATION_STATUS_CANCELLED: "cancelled",
}
ADAPTATION_FINAL = ("succeeded", "rejected", "failed", "cancelled")


class AdaptationLinks(ResponseModel):
    self: str
    cancel: str


def _accuracy(value: float, measured: bool) -> float | None:
    return round(float(value), 6) if measured else None


class Adaptation(ResponseModel):
    """One "adapt to our lab" run. Accuracies are fractions (0-1), null until measured."""

    id: str = Field(examples=["5f0c1d2e-7a43-4b1e-9c0a-3d2f1e0b9a87"])
    status: AdaptationStatus = Field(examples=["running"])
    finished: bool = Field(description="true once the status is final (succeeded, rejected, failed, cancelled)")
    organization_id: str
    model_name: str = Field(examples=["hemovision"])
    base_version: int | None = Field(description="the platform version it fine-tunes")
    previous_version: int | None = Field(description="the organization's version before; null = the platform's")
    model_version: int | None = Field(description="the version it produced (served only when succeeded)")
    cells: int = Field(description="reviewed cells used")
    holdout_cells: int = Field(description="of those, held back to check the result")
    epoch: int
    total_epochs: int
    progress: float = Field(ge=0, le=1, description="epoch / total_epochs")
    phase: str = Field(examples=["epoch 3/8"])
    holdout_accuracy_before: float | None = Field(description="held-back cells, the organization's current version")
    holdout_accuracy_after: float | None = Field(description="held-back cells, the adapted version")
    pbc_val_accuracy_before: float | None = Field(description="PBC validation split, current version")
    pbc_val_accuracy_after: float | None = Field(description="PBC validation split, adapted version")
    gate_reasons: list[str] = Field(description="why the gate refused it (rejected only)")
    error: str | None = Field(description="why it failed")
    created_by: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    links: AdaptationLinks

    @classmethod
    def from_pb(cls, a: training_pb2.Adaptation) -> Adaptation:
        # An unspecified status is what a service that has not set it yet means: "queued".
        status = ADAPTATION_STATUS.get(a.status, "queued")
        # proto3 has no "unset" for a double: the figures count once the gate has run (or any is non-zero)
        measured = status in ("succeeded", "rejected") or any(
            (a.holdout_accuracy_before, a.holdout_accuracy_after, a.pbc_val_accuracy_before,
             a.pbc_val_accuracy_after))
        base = f"/api/v1/adaptations/{a.id}"
        return cls(
            id=a.id,
            status=status,
            finished=status in ADAPTATION_FINAL,
            organization_id=a.organization_id,
            model_name=a.model_name,
            base_version=a.base_version or None,
            previous_version=a.previous_version or None,
            model_version=a.model_version or None,
            cells=a.cells,
            holdout_cells=a.holdout_cells,
            epoch=a.epoch,
            total_epochs=a.total_epochs,
            progress=round(min(1.0, a.epoch / a.total_epochs), 4) if a.total_epochs else 0.0,
            phase=a.phase,
            holdout_accuracy_before=_accuracy(a.holdout_accuracy_before, measured),
            holdout_accuracy_after=_accuracy(a.holdout_accuracy_after, measured),
            pbc_val_accuracy_before=_accuracy(a.pbc_val_accuracy_before, measured),
            pbc_val_accuracy_after=_accuracy(a.pbc_val_accuracy_after, measured),
            gate_reasons=list(a.gate_reasons),
            error=a.error or None,
            created_by=a.created_by,
            created_at=timestamp(a.created_at),
            started_at=timestamp(a.started_at),
            finished_at=timestamp(a.finished_at),
            links=AdaptationLinks(self=base, cancel=f"{base}/cancel"),
        )


class AdaptationList(ResponseModel):
    items: list[Adaptation]


class OrganizationModel(ResponseModel):
    """The version that answers the caller's organization."""

    organization_id: str
    model_name: str = Field(examples=["hemovision"])
    version: int = Field(examples=[7], description="the version its requests go to")
    adapted: bool = Field(description="true when it is the organization's own adapted version")
    source: Literal["adapted", "platform"]
    platform_version: int = Field(examples=[2], description="the platform's active version")
    stale: bool = Field(description="the adapted version's base is no longer the platform's active version: "
                        "still served; adapt again to build on the new one")

    @classmethod
    def from_pb(cls, m: training_pb2.OrganizationModel) -> OrganizationModel:
        return cls(organization_id=m.organization_id, model_name=m.model_name, version=m.version,
                   adapted=m.adapted, source="adapted" if m.adapted else "platform",
                   platform_version=m.platform_version, stale=m.stale)
