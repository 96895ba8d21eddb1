"""Predictions and the statistics over them."""

from __future__ import annotations

from pydantic import Field

from hemovision.history.v1 import history_pb2
from hemovision_contracts import CLASS_NAMES, confidence_holds

from hemovision_gateway.schemas.common import ModelRef, ResponseModel, rounded, timestamp


class Review(ResponseModel):
    """A person's review of a prediction; the model's own label stays in `label`."""

    label: str = Field(examples=["lymphocyte"])
    reviewed_by: str
    reviewed_at: str | None
    comment: str
    agrees: bool = Field(description="the reviewer kept the model's label")


class PredictionLinks(ResponseModel):
    self: str = Field(examples=["/api/v1/predictions/0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10"])
    report: str
    image: str | None = Field(description="null when no image is stored")
    heatmap: str | None = Field(description="null when no heatmap is stored")


class Prediction(ResponseModel):
    """One classified cell."""

    id: str = Field(examples=["0b6a3c2e-8f0e-4a55-9d0c-5f7e7f1c2a10"])
    label: str = Field(examples=["neutrophil"], description="the model's label")
    confidence: float = Field(examples=[0.9731], description="calibrated confidence of `label`")
    probabilities: dict[str, float] = Field(description="every class of the prediction's model, by name")
    needs_review: bool
    review_reasons: list[str] = Field(examples=[["low_confidence"]])
    confidence_holds: bool = Field(
        description="false when the cell is unlike the training data: the confidence is then no probability")
    model: ModelRef
    timings_ms: dict[str, float] = Field(
        description="where the upload's time went, ms: decode and pixels (the C++ pipeline) in the "
                    "preprocess service; preprocess (inference's call to it) and model (the model server) "
                    "inside inference (the gateway's whole AnalyzeImages call); history (storing); total",
        examples=[{"decode": 1.2, "pixels": 0.8, "preprocess": 4.1, "model": 18.0, "inference": 23.9,
                   "history": 6.3, "total": 31.4}])
    created_at: str | None = Field(examples=["2026-11-22T14:03:11.512000Z"])
    filename: str
    sample_id: str
    slide_id: str
    note: str
    batch_id: str | None = Field(description="the batch it belongs to; null for a single upload")
    image_sha256: str
    ood_score: float
    temperature: float
    has_image: bool
    has_heatmap: bool
    review: Review | None = Field(description="null until reviewed")
    links: PredictionLinks

    @classmethod
    def from_pb(cls, p: history_pb2.Prediction, *, timings_ms: dict[str, float] | None = None) -> Prediction:
        """`timings_ms` replaces the stored timings (the upload adds the gateway's own)."""
        review = None
        if p.reviewed_label:
            review = Review(label=p.reviewed_label, reviewed_by=p.reviewed_by, reviewed_at=timestamp(p.reviewed_at),
                            comment=p.review_comment, agrees=p.reviewed_label == p.label)
        base = f"/api/v1/predictions/{p.id}"
        reasons = list(p.review_reasons)
        return cls(
            id=p.id,
            label=p.label,
            confidence=round(float(p.confidence), 6),
            # the order of the model's output units, which the label set numbers alphabetically
            probabilities=dict(sorted(rounded(p.probabilities).items())),
            needs_review=p.needs_review,
            review_reasons=reasons,
            confidence_holds=confidence_holds(reasons),
            model=ModelRef(name=p.model.name, version=p.model.version),
            timings_ms=rounded(p.timings_ms, 2) if timings_ms is None else timings_ms,
            created_at=timestamp(p.created_at),
            filename=p.filename,
            sample_id=p.sample_id,
            slide_id=p.slide_id,
            note=p.note,
            batch_id=p.batch_id or None,
            image_sha256=p.image_sha256,
            ood_score=round(float(p.ood_score), 6),
            temperature=round(float(p.temperature), 6),
            has_image=p.has_image,
            has_heatmap=p.has_heatmap,
            review=review,
            links=PredictionLinks(self=base, report=f"{base}/report.pdf",
                                  image=f"{base}/image.png" if p.has_image else None,
                                  heatmap=f"{base}/heatmap.png" if p.has_heatmap else None),
        )


class PredictionPage(ResponseModel):
    items: list[Prediction]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class DailyCount(ResponseModel):
    day: str = Field(examples=["2026-11-22"])
    count: int
    needs_review: int


class ModelCount(ResponseModel):
    model: ModelRef
    count: int
    mean_confidence: float


class Agreement(ResponseModel):
    """How often reviewers kept the model's label, per label."""

    label: str
    reviewed: int
    agreed: int
    rate: float | None = Field(description="agreed / reviewed; null when none reviewed")


class Statistics(ResponseModel):
    total: int
    reviewed: int
    label_counts: dict[str, int] = Field(description="every class of the platform's label set")
    mean_confidence: float
    review_rate: float
    daily: list[DailyCount]
    by_model: list[ModelCount]
    agreement: list[Agreement]

    @classmethod
    def from_pb(cls, s: history_pb2.Statistics) -> Statistics:
        return cls(
            total=s.total,
            reviewed=s.reviewed,
            label_counts={name: s.label_counts.get(name, 0) for name in CLASS_NAMES},
            mean_confidence=round(float(s.mean_confidence), 6),
            review_rate=round(float(s.review_rate), 6),
            daily=[DailyCount(day=d.day, count=d.count, needs_review=d.needs_review) for d in s.daily],
            by_model=[ModelCount(model=ModelRef(name=m.model.name, version=m.model.version), count=m.count,
                                 mean_confidence=round(float(m.mean_confidence), 6)) for m in s.by_model],
            agreement=[Agreement(label=a.label, reviewed=a.reviewed, agreed=a.agreed,
                                 rate=round(a.agreed / a.reviewed, 4) if a.reviewed else None)
                       for a in s.agreement],
        )
