"""HV_METRICS=off (bench-serving's A/B only): no /metrics port and no per-cell series (the RED
interceptor and middleware are left out by their callers); anything but on/off is refused. Each case runs in a fresh interpreter
because the switch is read once, at import."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
from prometheus_client import REGISTRY
from hemovision_telemetry.metrics import metrics_enabled, observe_prediction, serve_metrics
observe_prediction(label="neutrophil", model_version="1", organization="", flagged=True, confidence=0.9)
endpoint = serve_metrics(0, host="127.0.0.1")
counted = REGISTRY.get_sample_value("hemovision_predictions_total",
                                    {"label": "neutrophil", "model_version": "1", "organization": "platform"})
print(metrics_enabled(), endpoint is not None, counted)
if endpoint is not None:
    endpoint.close()
"""


def probe(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HV_METRICS"}
    if value is not None:
        env["HV_METRICS"] = value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)


def test_metrics_are_on_by_default():
    done = probe(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "1.0"]


def test_off_serves_and_counts_nothing():
    done = probe(" OFF ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "None"]


def test_anything_else_is_refused():
    done = probe("maybe")
    assert done.returncode != 0
    assert "HV_METRICS must be on or off, not 'maybe'" in done.stderr
