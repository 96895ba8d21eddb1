"""Protobuf messages -> the JSON the REST API answers with."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from hemovision_contracts import CLASS_NAMES, confidence_holds, role_from_proto
from hemovision.history.v1 import history_pb2
from hemovision.training.v1 import training_pb2


def ts(value: Timestamp | None) -> str | None:
    """RFC 3339 UTC, or None for an unset timestamp."""
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime().replace(microsecond=(value.nanos // 1000)).isoformat() + "Z"


def role_name(role: int) -> str:
    return role_from_proto(role) or "unknown"


def user(u) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "organization": u.organization_name,
        "organization_id": u.organization_id,
        "role": role_name(u.role),
        "active": u.active,
        "email_verified": u.email_verified,
        "created_at": ts(u.created_at),
    }


def token_pair(t) -> dict[str, Any]:
    return {
        "access_token": t.access_token,
        "refresh_token": t.refresh_token,
        "token_type": t.token_type or "bearer",
        "expires_in": t.expires_in,
    }


def _rounded(m, digits: int = 6) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in m.items()}


def probabilities(m) -> dict[str, float]:
    """The prediction's own classes (its model's), by name: the order of the model's output
    units, which the label set numbers alphabetically."""
    return dict(sorted(_rounded(m).items()))


def prediction(p: history_pb2.Prediction) -> dict[str, Any]:
    review = None
    if p.reviewed_label:
        review = {
            "label": p.reviewed_label,
            "reviewed_by": p.reviewed_by,
            "reviewed_at": ts(p.reviewed_at),
            "comment": p.review_comment,
            "agrees": p.reviewed_label == p.label,
        }
    base = f"/api/v1/predictions/{p.id}"
    return {
        "id": p.id,
        "label": p.label,
        "confidence": round(float(p.confidence), 6),
        "probabilities": probabilities(p.probabilities),
        "needs_review": p.needs_review,
        "review_reasons": list(p.review_reasons),
        # false when the cell is unlike the training data: the confidence is then no probability
        "confidence_holds": confidence_holds(p.review_reasons),
        "model": {"name": p.model.name, "version": p.model.version},
        "timings_ms": {k: round(float(v), 2) for k, v in p.timings_ms.items()},
        "created_at": ts(p.created_at),
        "filename": p.filename,
        "sample_id": p.sample_id,
        "slide_id": p.slide_id,
        "note": p.note,
        "batch_id": p.batch_id or None,
        "image_sha256": p.image_sha256,
        "ood_score": round(float(p.ood_score), 6),
        "temperature": round(float(p.temperature), 6),
        "has_image": p.has_image,
        "has_heatmap": p.has_heatmap,
        "review": review,
        "links": {
            "self": base,
            "report": f"{base}/report.pdf",
            "image": f"{base}/image.png" if p.has_image else None,
            "heatmap": f"{base}/heatmap.png" if p.has_heatmap else None,
        },
    }


BATCH_STATUS = {
    history_pb2.BATCH_STATUS_QUEUED: "queued",
    history_pb2.BATCH_STATUS_RUNNING: "running",
    history_pb2.BATCH_STATUS_COMPLETED: "completed",
    history_pb2.BATCH_STATUS_FAILED: "failed",
}
ITEM_STATUS = {
    history_pb2.BATCH_ITEM_STATUS_SUCCEEDED: "succeeded",
    history_pb2.BATCH_ITEM_STATUS_FAILED: "failed",
}


def batch(b: history_pb2.Batch) -> dict[str, Any]:
    done = b.succeeded + b.failed
    classified = sum(b.label_counts.values())
    differential = {
        name: round(100.0 * b.label_counts.get(name, 0) / classified, 2) if classified else 0.0
        for name in CLASS_NAMES
    }
    return {
        "id": b.id,
        "status": BATCH_STATUS.get(b.status, "unknown"),
        "total": b.total,
        "succeeded": b.succeeded,
        "failed": b.failed,
        "done": done,
        "progress": round(done / b.total, 4) if b.total else 1.0,
        "sample_id": b.sample_id,
        "slide_id": b.slide_id,
        "note": b.note,
        "created_at": ts(b.created_at),
        "completed_at": ts(b.completed_at),
        "label_counts": {name: b.label_counts.get(name, 0) for name in CLASS_NAMES},
        "differential_percent": differential,
        "needs_review": b.needs_review,
        "links": {"self": f"/api/v1/batches/{b.id}", "events": f"/api/v1/batches/{b.id}/events",
                  "report": f"/api/v1/batches/{b.id}/report.pdf"},
    }


def batch_item(i: history_pb2.BatchItem) -> dict[str, Any]:
    return {
        "index": i.index,
        "filename": i.filename,
        "status": ITEM_STATUS.get(i.status, "pending"),
        "prediction_id": i.prediction_id or None,
        "error": i.error or None,
        "prediction": prediction(i.prediction) if i.HasField("prediction") and i.prediction.id else None,
    }


VERSION_STATUS = {
    training_pb2.VERSION_STATUS_REGISTERED: "registered",
    training_pb2.VERSION_STATUS_ACTIVE: "active",
    training_pb2.VERSION_STATUS_RETIRED: "retired",
}
JOB_STATUS = {
    training_pb2.JOB_STATUS_QUEUED: "queued",
    training_pb2.JOB_STATUS_RUNNING: "running",
    training_pb2.JOB_STATUS_SUCCEEDED: "succeeded",
    training_pb2.JOB_STATUS_FAILED: "failed",
    training_pb2.JOB_STATUS_CANCELLED: "cancelled",
}


def model_version(v: training_pb2.ModelVersion) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return {
        "name": v.name,
        "version": v.version,
        "status": VERSION_STATUS.get(v.status, "unknown"),
        "metrics": {k: round(float(x), 6) for k, x in v.metrics.items()},
        "created_at": ts(v.created_at),
        "activated_at": ts(v.activated_at),
        "created_by": v.created_by,
        "parent_version": v.parent_version or None,
        "job_id": v.job_id or None,
        "data_hash": v.data_hash,
        "was_active": v.was_active,
        "organization_id": v.organization_id or None,
        "stale": v.stale,
        "training_config": MessageToDict(v.training_config) if v.HasField("training_config") else {},
    }


def training_job(j: training_pb2.TrainingJob) -> dict[str, Any]:
    c = j.config
    return {
        "id": j.id,
        "status": JOB_STATUS.get(j.status, "unknown"),
        "phase": j.phase,
        "epoch": j.epoch,
        "total_epochs": j.total_epochs,
        "metrics": {k: round(float(x), 6) for k, x in j.metrics.items()},
        "model_version": j.model_version or None,
        "error": j.error or None,
        "created_by": j.created_by,
        "created_at": ts(j.created_at),
        "started_at": ts(j.started_at),
        "finished_at": ts(j.finished_at),
        "config": {
            "data_dir": c.data_dir, "model_name": c.model_name, "epochs": c.epochs,
            "batch_size": c.batch_size, "input_size": c.input_size, "seed": c.seed,
            "limit_per_class": c.limit_per_class, "learning_rate": round(float(c.learning_rate), 8),
            "auto_activate": c.auto_activate, "parent_version": c.parent_version,
        },
    }


ADAPTATION_STATUS = {
    training_pb2.ADAPTATION_STATUS_QUEUED: "queued",
    training_pb2.ADAPTATION_STATUS_RUNNING: "running",
    training_pb2.ADAPTATION_STATUS_SUCCEEDED: "succeeded",
    training_pb2.ADAPTATION_STATUS_REJECTED: "rejected",
    training_pb2.ADAPTATION_STATUS_FAILED: "failed",
    training_pb2.ADAPTATION_STATUS_CANCELLED: "cancelled",
}
ADAPTATION_FINAL = ("succeeded", "rejected", "failed", "cancelled")


def _accuracy(value: float, measured: bool) -> float | None:
    return round(float(value), 6) if measured else None


def adaptation(a: training_pb2.Adaptation) -> dict[str, Any]:
    # An unspecified status would otherwise be a 500 from the response model: "queued" is what
    # a service that has not set it yet means.
    status = ADAPTATION_STATUS.get(a.status, "queued")
    # proto3 has no "unset" for a double: the figures count once the gate has run (or any is non-zero)
    measured = status in ("succeeded", "rejected") or any(
        (a.holdout_accuracy_before, a.holdout_accuracy_after, a.pbc_val_accuracy_before, a.pbc_val_accuracy_after))
    base = f"/api/v1/adaptations/{a.id}"
    return {
        "id": a.id,
        "status": status,
        "finished": status in ADAPTATION_FINAL,
        "organization_id": a.organization_id,
        "model_name": a.model_name,
        "base_version": a.base_version or None,
        "previous_version": a.previous_version or None,
        "model_version": a.model_version or None,
        "cells": a.cells,
        "holdout_cells": a.holdout_cells,
        "epoch": a.epoch,
        "total_epochs": a.total_epochs,
        "progress": round(min(1.0, a.epoch / a.total_epochs), 4) if a.total_epochs else 0.0,
        "phase": a.phase,
        "holdout_accuracy_before": _accuracy(a.holdout_accuracy_before, measured),
        "holdout_accuracy_after": _accuracy(a.holdout_accuracy_after, measured),
        "pbc_val_accuracy_before": _accuracy(a.pbc_val_accuracy_before, measured),
        "pbc_val_accuracy_after": _accuracy(a.pbc_val_accuracy_after, measured),
        "gate_reasons": list(a.gate_reasons),
        "error": a.error or None,
        "created_by": a.created_by,
        "created_at": ts(a.created_at),
        "started_at": ts(a.started_at),
        "finished_at": ts(a.finished_at),
        "links": {"self": base, "cancel": f"{base}/cancel"},
    }


def organization_model(m: training_pb2.OrganizationModel) -> dict[str, Any]:
    return {
        "organization_id": m.organization_id,
        "model_name": m.model_name,
        "version": m.version,
        "adapted": m.adapted,
        "source": "adapted" if m.adapted else "platform",
        "platform_version": m.platform_version,
        "stale": m.stale,
    }


def statistics(s: history_pb2.Statistics) -> dict[str, Any]:
    return {
        "total": s.total,
        "reviewed": s.reviewed,
        "label_counts": {name: s.label_counts.get(name, 0) for name in CLASS_NAMES},
        "mean_confidence": round(float(s.mean_confidence), 6),
        "review_rate": round(float(s.review_rate), 6),
        "daily": [{"day": d.day, "count": d.count, "needs_review": d.needs_review} for d in s.daily],
        "by_model": [
            {"model": {"name": m.model.name, "version": m.model.version}, "count": m.count,
             "mean_confidence": round(float(m.mean_confidence), 6)}
            for m in s.by_model
        ],
        "agreement": [
            {"label": a.label, "reviewed": a.reviewed, "agreed": a.agreed,
             "rate": round(a.agreed / a.reviewed, 4) if a.reviewed else None}
            for a in s.agreement
        ],
    }


def api_key(k) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": ts(k.created_at),
        "last_used_at": ts(k.last_used_at),
        "revoked_at": ts(k.revoked_at),
    }
