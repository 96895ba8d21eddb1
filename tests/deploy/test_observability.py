"""The alert rules and the Grafana dashboard in deploy/observability, offline: promtool checks
the rules and runs their unit tests (each alert fires on its series, stays quiet otherwise), and
every PromQL expression parses to metric names. That the services really export those names is
checked on the running system (tests/e2e/test_metrics_on_system.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"


def _promql():
    spec = importlib.util.spec_from_file_location("promql_names", OBSERVABILITY / "promql_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is required (Debian package `prometheus`; .ci/run installs it)", pytrace=False)
    return path


@pytest.mark.parametrize("args", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]])
def test_promtool_accepts_the_rules_and_their_unit_tests(args):
    result = subprocess.run([_promtool(), *args], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_grafana_json_with_prometheus_queries():
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert _promql().metric_names(target["expr"]), (panel["title"], target["expr"])


def test_promql_names_parser():
    names = _promql().metric_names(
        'histogram_quantile(0.99, sum by (le, grpc_service) (rate(grpc_server_handling_seconds_bucket'
        '{grpc_code=~"OK|INTERNAL"}[5m]))) / on (job) group_left up > 0.5 and changes(x_total[2h]) == 0')
    assert names == {"grpc_server_handling_seconds_bucket", "up", "x_total"}
    assert len(_promql().rule_expressions()) == 10


def test_serving_hpa_reads_the_series_inference_exports():
    """The prod HPA's Pods metric is the one prometheus-adapter publishes, from the series every
    inference pod exports (hemovision_telemetry.metrics.GRPC_IN_FLIGHT)."""
    import re

    from hemovision_telemetry.metrics import GRPC_IN_FLIGHT

    component = OBSERVABILITY.parent / "k8s" / "components" / "inference-serving-hpa"
    rules = (component / "adapter-rules.yaml").read_text()
    hpa = (component / "hpa-in-flight.yaml").read_text()
    series = re.search(r"seriesQuery: '(\w+)\{", rules).group(1)
    published = re.search(r'as: "(\w+)"', rules).group(1)
    assert series == GRPC_IN_FLIGHT._name
    assert 'grpc_service="hemovision.inference.v1.InferenceService"' in rules
    assert re.search(rf"metric:\s*\n\s*name: {published}\n", hpa)
    prod = (OBSERVABILITY.parent / "k8s" / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert "../../components/inference-serving-hpa" in prod
