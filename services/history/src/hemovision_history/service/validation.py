"""Request checks shared by the history services: every refusal is an InvalidRequest whose
message names the field; ids that are not UUIDs are left to the caller to answer NOT_FOUND."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass

from hemovision_contracts import CLASS_NAMES

from hemovision_history import domain
from hemovision_history.errors import InvalidRequest, NoOrganization

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BLOB_BYTES = 8 * 1024 * 1024
PROBABILITY_SUM_TOLERANCE = 1e-2
CONFIDENCE_TOLERANCE = 1e-3
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidRequest(message)


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def clean_text(value: str, field: str, max_len: int) -> str:
    """`value` stripped; refused when longer than `max_len` or holding a NUL."""
    value = value.strip()
    check(len(value) <= max_len, f"{field} is longer than {max_len} characters")
    check("\x00" not in value, f"{field} contains a NUL character")
    return value


def organization_of(caller: domain.Caller) -> str:
    """The caller's organization; platform roles without one may not use organization data."""
    if not caller.organization_id:
        raise NoOrganization()
    return caller.organization_id


def clean_idempotency_key(key: str) -> str | None:
    key = key.strip()
    check(len(key) <= 200, "idempotency_key is longer than 200 characters")
    return key or None


def validate_new_prediction(p: domain.NewPrediction) -> domain.NewPrediction:
    """Raises InvalidRequest with a message naming the field; returns the normalised record.
    The classes are the platform's label set: history keeps no model metadata of its own."""
    check(p.label in CLASS_NAMES, f"label must be one of {', '.join(CLASS_NAMES)}; got {p.label!r}")
    missing = [c for c in CLASS_NAMES if c not in p.probabilities]
    unknown = sorted(set(p.probabilities) - set(CLASS_NAMES))
    check(not missing, f"probabilities is missing {', '.join(missing)}")
    check(not unknown, f"probabilities has unknown classes: {', '.join(unknown)}")
    for name, value in p.probabilities.items():
        check(finite(value) and 0.0 <= value <= 1.0, f"probabilities[{name}] must be in [0, 1]")
    total = sum(p.probabilities.values())
    check(abs(total - 1.0) <= PROBABILITY_SUM_TOLERANCE, f"probabilities must sum to 1 (got {total:.4f})")
    check(finite(p.confidence) and 0.0 <= p.confidence <= 1.0, "confidence must be in [0, 1]")
    check(
        abs(p.confidence - p.probabilities[p.label]) <= CONFIDENCE_TOLERANCE,
        "confidence must equal the probability of label",
    )
    check(len(p.review_reasons) <= 16, "review_reasons has more than 16 entries")
    for reason in p.review_reasons:
        check(0 < len(reason) <= 64, "each review reason must be 1..64 characters")
    check(bool(p.model_name.strip()), "model.name is required")
    check(len(p.model_name) <= 128, "model.name is longer than 128 characters")
    check(p.model_version >= 0, "model.version must not be negative")
    check(finite(p.temperature) and p.temperature >= 0.0, "temperature must be a non-negative number")
    check(finite(p.ood_score), "ood_score must be a finite number")
    check(len(p.timings_ms) <= 32, "timings_ms has more than 32 entries")
    for name, value in p.timings_ms.items():
        check(0 < len(name) <= 64, "timings_ms keys must be 1..64 characters")
        check(finite(value) and value >= 0.0, f"timings_ms[{name}] must be a non-negative number")
    sha = p.image_sha256.strip().lower()
    check(sha == "" or bool(_SHA256.match(sha)), "image_sha256 must be 64 hexadecimal characters")
    # The file name is informational: keep the last path component only.
    filename = clean_text(p.filename.replace("\\", "/").rsplit("/", 1)[-1], "filename", 255)
    batch_id = (p.batch_id or "").strip() or None
    check(batch_id is None or is_uuid(batch_id), "batch_id must be a UUID")
    return domain.NewPrediction(
        label=p.label,
        confidence=float(p.confidence),
        probabilities={c: float(p.probabilities[c]) for c in CLASS_NAMES},
        needs_review=bool(p.needs_review),
        review_reasons=list(p.review_reasons),
        model_name=p.model_name.strip(),
        model_version=int(p.model_version),
        temperature=float(p.temperature),
        ood_score=float(p.ood_score),
        timings_ms={k: float(v) for k, v in p.timings_ms.items()},
        image_sha256=sha,
        filename=filename,
        sample_id=clean_text(p.sample_id, "sample_id", 128),
        slide_id=clean_text(p.slide_id, "slide_id", 128),
        note=clean_text(p.note, "note", 2000),
        batch_id=batch_id,
    )


def _check_png(data: bytes, field: str) -> None:
    check(len(data) <= MAX_BLOB_BYTES, f"{field} is larger than {MAX_BLOB_BYTES // (1024 * 1024)} MiB")
    check(data.startswith(PNG_SIGNATURE), f"{field} must be a PNG image")


@dataclass(frozen=True)
class ValidRecord:
    """One validated RecordPrediction request."""

    key: str | None
    new: domain.NewPrediction
    image_png: bytes
    heatmap_png: bytes


def validated_record(idempotency_key: str, prediction: domain.NewPrediction, image_png: bytes,
                     heatmap_png: bytes) -> ValidRecord:
    """PredictionService.record's arguments checked and normalised (raises InvalidRequest)."""
    key = clean_idempotency_key(idempotency_key)
    new = validate_new_prediction(prediction)
    for field_name, data in (("image_png", image_png), ("heatmap_png", heatmap_png)):
        if data:
            _check_png(data, field_name)
    return ValidRecord(key, new, image_png, heatmap_png)


def validate_filter(f: domain.PredictionFilter) -> domain.PredictionFilter:
    check(f.label == "" or f.label in CLASS_NAMES, f"filter.label must be one of {', '.join(CLASS_NAMES)}")
    check(f.model_version >= 0, "filter.model_version must not be negative")
    check(f.batch_id == "" or is_uuid(f.batch_id), "filter.batch_id must be a UUID")
    if f.created_start and f.created_end:
        check(f.created_start <= f.created_end, "filter.created.start must not be after created.end")
    return f
