"""The REST API's response shapes: every JSON route documents a typed schema in OpenAPI, and the
models build the same JSON the API answered with before they existed (field names, nesting, null)."""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp

from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision.training.v1 import training_pb2

from hemovision_gateway.schemas import Batch, BatchDetail, BatchItem, ModelVersion, Prediction, TrainingJob

NOT_JSON = {"text/csv", "application/zip", "text/event-stream", "application/pdf", "image/png"}


def _resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _typed(spec: dict, schema: dict) -> bool:
    """A named model with properties (or a union of them), never a bare or empty object."""
    if "anyOf" in schema or "oneOf" in schema:
        return all(_typed(spec, s) for s in schema.get("anyOf", schema.get("oneOf")))
    return "$ref" in schema and bool(_resolve(spec, schema).get("properties"))


async def test_every_json_route_has_a_typed_response_schema(client):
    spec = (await client.get("/openapi.json")).json()
    untyped, checked = [], 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            success = {code: r for code, r in op["responses"].items() if code.startswith("2") and code != "204"}
            if not success:
                assert method == "delete" or path.endswith(("/logout", "/password", "/password-reset")), \
                    (method, path)
                continue
            for code, response in success.items():
                content = response.get("content", {})
                if "application/json" not in content:
                    assert set(content) & NOT_JSON, (method, path, code, content)
                    continue
                checked += 1
                if not _typed(spec, content["application/json"].get("schema", {})):
                    untyped.append(f"{method.upper()} {path} {code}")
    assert not untyped, f"JSON routes without a typed response schema: {untyped}"
    assert checked >= 40
    # documented field by field, nested models included
    schemas = spec["components"]["schemas"]
    assert {"review", "links", "confidence_holds", "batch_id"} <= set(schemas["Prediction"]["properties"])
    assert "items" in schemas["BatchDetail"]["properties"] and "items" not in schemas["Batch"]["properties"]


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def _prediction(**extra) -> history_pb2.Prediction:
    return history_pb2.Prediction(
        id="p1", label="neutrophil", confidence=0.97311111, probabilities={"neutrophil": 0.9, "basophil": 0.1},
        needs_review=True, review_reasons=["out_of_distribution"], model=common_pb2.ModelRef(name="hv", version=2),
        timings_ms={"model": 1.234}, image_sha256="ab", filename="c.png", sample_id="S", slide_id="", note="n",
        has_image=True, has_heatmap=False, created_at=_ts(1_790_000_000, 512_000_000), temperature=1.5,
        ood_score=0.25, **extra)


def test_prediction_json_keeps_its_shape():
    body = json.loads(Prediction.from_pb(_prediction()).model_dump_json())
    assert body == {
        "id": "p1", "label": "neutrophil", "confidence": 0.973111,
        "probabilities": {"basophil": 0.1, "neutrophil": 0.9},
        "needs_review": True, "review_reasons": ["out_of_distribution"], "confidence_holds": False,
        "model": {"name": "hv", "version": 2}, "timings_ms": {"model": 1.23},
        "created_at": "2026-09-21T14:13:20.512000Z", "filename": "c.png", "sample_id": "S", "slide_id": "",
        "note": "n", "batch_id": None, "image_sha256": "ab", "ood_score": 0.25, "temperature": 1.5,
        "has_image": True, "has_heatmap": False, "review": None,
        "links": {"self": "/api/v1/predictions/p1", "report": "/api/v1/predictions/p1/report.pdf",
                  "image": "/api/v1/predictions/p1/image.png", "heatmap": None},
    }
    assert list(body) == list(Prediction.model_fields)  # key order as before
    reviewed = Prediction.from_pb(_prediction(reviewed_label="monocyte", reviewed_by="u", review_comment="c",
                                              batch_id="b1"), timings_ms={"total": 3.0})
    dumped = reviewed.model_dump(mode="json")
    assert dumped["review"] == {"label": "monocyte", "reviewed_by": "u", "reviewed_at": None, "comment": "c",
                                "agrees": False}
    assert dumped["batch_id"] == "b1" and dumped["timings_ms"] == {"total": 3.0}


def test_batch_json_keeps_its_shape():
    b = history_pb2.Batch(id="b1", status=history_pb2.BATCH_STATUS_RUNNING, total=4, succeeded=1, failed=1,
                          label_counts={"neutrophil": 1}, needs_review=1)
    body = Batch.from_pb(b).model_dump(mode="json")
    assert body["status"] == "running" and body["done"] == 2 and body["progress"] == 0.5
    assert body["differential_percent"]["neutrophil"] == 100.0 and body["label_counts"]["basophil"] == 0
    assert body["completed_at"] is None and "items" not in body
    assert body["links"] == {"self": "/api/v1/batches/b1", "events": "/api/v1/batches/b1/events",
                             "report": "/api/v1/batches/b1/report.pdf"}
    pending = BatchItem.from_pb(history_pb2.BatchItem(index=3, filename="x.png"))
    assert pending.model_dump() == {"index": 3, "filename": "x.png", "status": "pending", "prediction_id": None,
                                    "error": None, "prediction": None}
    detail = BatchDetail.from_pb(b, items=[pending]).model_dump(mode="json")
    assert list(detail)[-1] == "items" and len(detail["items"]) == 1


def test_model_version_and_job_json_keep_their_shape():
    v = ModelVersion.from_pb(training_pb2.ModelVersion(name="hv", version=3, status=training_pb2.VERSION_STATUS_ACTIVE,
                                                       metrics={"accuracy": 0.5}))
    assert v.model_dump(mode="json") | {"created_at": None} == {
        "name": "hv", "version": 3, "status": "active", "metrics": {"accuracy": 0.5}, "created_at": None,
        "activated_at": None, "created_by": "", "parent_version": None, "job_id": None, "data_hash": "",
        "was_active": False, "organization_id": None, "stale": False, "deprecated": False,
        "deprecation_reason": "", "deprecated_at": None, "training_config": {}}
    job = TrainingJob.from_pb(training_pb2.TrainingJob(id="j", config=training_pb2.TrainingConfig(epochs=2)))
    body = job.model_dump(mode="json")
    assert body["status"] == "unknown" and body["model_version"] is None and body["config"]["epochs"] == 2
    assert set(body["config"]) == {"data_dir", "model_name", "epochs", "batch_size", "input_size", "seed",
                                   "limit_per_class", "learning_rate", "auto_activate", "parent_version"}
