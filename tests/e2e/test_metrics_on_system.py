"""Metrics on the system as `make up` starts it: every server answers /metrics on its own port,
an upload shows up in the gateway's RED series and inference's prediction series, and every
metric the Grafana dashboard and the alert rules read is one the services really export."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import httpx

from hemovision_contracts.topology import SERVERS

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _scrape(port: int) -> str:
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    reply.raise_for_status()
    return reply.text


def _referenced_names() -> set[str]:
    spec = importlib.util.spec_from_file_location("promql_names", OBSERVABILITY / "promql_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.referenced_names()


def test_every_server_exports_metrics_and_the_dashboard_reads_real_names(system, client, test_images, new_lab):
    headers = new_lab()
    _, path = test_images[0]
    created = client.post("/api/v1/predictions", headers=headers,
                          files={"file": ("cell.png", path.read_bytes(), "image/png")})
    assert created.status_code == 201, created.text
    exported: dict[str, str] = {}
    for server in SERVERS.values():
        if server.name == "model-server":
            continue  # TF Serving's own metrics, on its REST port
        exported[server.name] = _scrape(server.metrics_port + system.port_offset)
    families = {m for text in exported.values() for m in re.findall(r"^# TYPE (\S+) ", text, re.M)}
    names = {f + s for f in families for s in SUFFIXES}
    missing = _referenced_names() - names
    assert not missing, f"the dashboard/alerts read metrics no service exports: {sorted(missing)}"
    # the upload itself: the gateway's route template and inference's counted prediction
    gateway, inference = exported["gateway"], exported["inference"]
    assert re.search(r'http_server_requests_total\{method="POST",route="/api/v1/predictions",status="201"\} [1-9]',
                     gateway)
    label = created.json()["label"]
    assert re.search(rf'hemovision_predictions_total\{{label="{label}",model_version="\d+",organization="[^"]+"\}} [1-9]',
                     inference)
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="AnalyzeImages"' in inference
    for name in ("auth", "history", "preprocess", "reports", "training"):
        assert "grpc_server_handled_total" in exported[name], name
