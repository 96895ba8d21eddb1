"""Metrics on the system as `make up` starts it: every server and both Celery workers answer
/metrics on their own ports, an upload shows up in the gateway's RED series and inference's
prediction series, a batch in the batch worker's task series, and every metric the Grafana
dashboard and the alert rules read is one the services and workers really export."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hemovision_contracts.topology import SERVERS, WORKERS

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def _scrape(port: int) -> str:
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    reply.raise_for_status()
    return reply.text


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels}` of a scraped /metrics text (labels in any order), or None."""
    return next((s.value for family in text_string_to_metric_families(text) for s in family.samples
                 if s.name == name and s.labels == labels), None)


def _referenced_names() -> set[str]:
    spec = importlib.util.spec_from_file_location("promql_names", OBSERVABILITY / "promql_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.referenced_names()


def _wait_for_batch(client, headers: dict[str, str], batch_id: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        body = client.get(f"/api/v1/batches/{batch_id}", headers=headers).json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def test_every_server_and_worker_exports_metrics_and_the_dashboard_reads_real_names(system, client, test_images,
                                                                                     new_lab):
    headers = new_lab()
    _, path = test_images[0]
    created = client.post("/api/v1/predictions", headers=headers,
                          files={"file": ("cell.png", path.read_bytes(), "image/png")})
    assert created.status_code == 201, created.text
    batch = client.post("/api/v1/batches", headers=headers, timeout=120,
                        files=[("files", (f"cell-{i}.png", p.read_bytes(), "image/png"))
                               for i, (_, p) in enumerate(test_images[:2])])
    assert batch.status_code == 202, batch.text
    body = _wait_for_batch(client, headers, batch.json()["id"])
    assert [item["status"] for item in body["items"]] == ["succeeded", "succeeded"], body
    # the items' records in history end their tasks: the worker counts them a moment later
    task = "hemovision.batches.process_item"
    batch_worker_port = WORKERS["gateway-worker"].metrics_port + system.port_offset
    deadline = time.monotonic() + 30
    while (_value(_scrape(batch_worker_port), "celery_tasks_total", task=task, state="succeeded") or 0) < 2:
        assert time.monotonic() < deadline, _scrape(batch_worker_port)
        time.sleep(0.5)
    exported: dict[str, str] = {}
    for server in SERVERS.values():
        if server.name == "model-server":
            continue  # TF Serving's own metrics, on its REST port
        exported[server.name] = _scrape(server.metrics_port + system.port_offset)
    for worker in WORKERS.values():
        exported[worker.name] = _scrape(worker.metrics_port + system.port_offset)
    families = {m for text in exported.values() for m in re.findall(r"^# TYPE (\S+) ", text, re.M)}
    names = {f + s for f in families for s in SUFFIXES}
    missing = _referenced_names() - names
    assert not missing, f"the dashboard/alerts read metrics no service or worker exports: {sorted(missing)}"
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
    # the batch: its two items ran as the batch worker's tasks, each timed from its publication
    # by the gateway, and none is running any more
    batch_worker = exported["gateway-worker"]
    for histogram in ("celery_task_duration_seconds_count", "celery_task_queue_wait_seconds_count"):
        assert (_value(batch_worker, histogram, task=task) or 0) >= 2, (histogram, batch_worker)
    assert _value(batch_worker, "celery_tasks_in_progress", task=task) in (0, 1)  # solo pool: one at a time
    # the training worker (prefork: its job children's series, summed by its main process) answers
    assert (_value(exported["training-worker"], "process_resident_memory_bytes") or 0) > 0
