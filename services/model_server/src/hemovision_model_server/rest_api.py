"""TF Serving's REST API (port 8501) and the Prometheus endpoint, as a small Starlette app.

POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict   row ("instances") or columnar ("inputs") JSON
GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model version status
GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature defs
GET  /monitoring/prometheus/metrics
"""

from __future__ import annotations

import json
import re

import numpy as np
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tensorflow_serving.apis import get_model_metadata_pb2

from hemovision_model_server.manager import LookupFailed, State
from hemovision_model_server.predict import PredictFailed, Predictor

_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<suffix>:predict|/metadata)?$")
_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}
_CODE_NAMES = {0: "OK", 2: "UNKNOWN", 5: "NOT_FOUND", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 14: "UNAVAILABLE"}


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=_HTTP.get(code, 500))


def create_rest_app(predictor: Predictor, metrics_registry) -> Starlette:
    manager = predictor.manager

    async def models(request: Request) -> Response:
        match = _PATH.match(request.path_params["path"])
        if not match:
            return _error("NOT_FOUND", f"malformed request: {request.method} {request.url.path}")
        name, label, suffix = match["name"], match["label"], match["suffix"]
        version = int(match["version"]) if match["version"] else None
        try:
            if request.method == "POST":
                if suffix != ":predict":
                    return _error("NOT_FOUND", "only :predict accepts POST")
                return await _predict(request, name, version, label)
            if suffix == ":predict":
                return _error("NOT_FOUND", ":predict needs POST")
            if suffix == "/metadata":
                servable = manager.resolve(name, version, label)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for key, value in servable.signature_defs.items():
                    sig_map.signature_def[key].CopyFrom(value)
                return JSONResponse(
                    {
                        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(sig_map)},
                    }
                )
            if label:
                entry = manager.entry(name)
                if label not in entry.labels:
                    raise LookupFailed("INVALID_ARGUMENT", f"unrecognized version label {label!r}")
                version = entry.labels[label]
            rows = manager.statuses(name, version)
            return JSONResponse(
                {
                    "model_version_status": [
                        {
                            "version": str(v),
                            "state": State.Name(state),
                            "status": {"error_code": _CODE_NAMES.get(code, str(code)), "error_message": message},
                        }
                        for v, state, code, message in rows
                    ]
                }
            )
        except (LookupFailed, PredictFailed) as exc:
            return _error(exc.code, exc.message)

    async def _predict(request: Request, name: str, version: int | None, label: str | None) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _error("INVALID_ARGUMENT", f"JSON parse error: {exc}")
        if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
            return _error("INVALID_ARGUMENT", "request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
        signature = body.get("signature_name") or "serving_default"
        servable = manager.resolve(name, version, label)
        sig = servable.signatures.get(signature)
        if sig is None:
            return _error("INVALID_ARGUMENT", f"Serving signature name: {signature!r} not found in signature def")
        keys = list(sig.inputs)
        try:
            if "instances" in body:
                rows = body["instances"]
                if not isinstance(rows, list) or not rows:
                    raise ValueError("'instances' must be a non-empty list")
                if all(isinstance(r, dict) for r in rows):
                    inputs = {k: np.asarray([r[k] for r in rows], dtype=sig.inputs[k][0]) for k in keys}
                elif len(keys) == 1:
                    inputs = {keys[0]: np.asarray(rows, dtype=sig.inputs[keys[0]][0])}
                else:
                    raise ValueError("signature has several inputs: every instance must be an object")
            else:
                columns = body["inputs"]
                if isinstance(columns, dict):
                    inputs = {k: np.asarray(v, dtype=sig.inputs[k][0]) for k, v in columns.items() if k in sig.inputs}
                    if set(columns) - set(sig.inputs):
                        raise ValueError(f"unknown inputs {sorted(set(columns) - set(sig.inputs))}")
                elif len(keys) == 1:
                    inputs = {keys[0]: np.asarray(columns, dtype=sig.inputs[keys[0]][0])}
                else:
                    raise ValueError("signature has several inputs: 'inputs' must be an object")
        except (KeyError, ValueError, TypeError) as exc:
            return _error("INVALID_ARGUMENT", f"bad input: {exc}")
        result = await predictor.predict(
            name=name, version=servable.version, label=None, signature=signature, inputs=inputs, api="rest"
        )
        outputs = result.outputs
        if "instances" in body:
            names = sorted(outputs)
            if len(names) == 1:
                predictions = outputs[names[0]].tolist()
            else:
                n = next(iter(outputs.values())).shape[0]
                predictions = [{k: outputs[k][i].tolist() for k in names} for i in range(n)]
            return JSONResponse({"predictions": predictions}, headers={"X-Model-Version": str(result.version)})
        if len(outputs) == 1:
            return JSONResponse({"outputs": next(iter(outputs.values())).tolist()})
        return JSONResponse(
            {"outputs": {k: v.tolist() for k, v in outputs.items()}}, headers={"X-Model-Version": str(result.version)}
        )

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/models/{path:path}", models, methods=["GET", "POST"]),
            Route("/monitoring/prometheus/metrics", prometheus, methods=["GET"]),
        ]
    )
