"""The metric names a PromQL expression reads (stdlib only: deploy checks and tests load it by
path). Enough PromQL for our rules and dashboard: selectors, functions, aggregations with
by/without, binary operators, string literals and durations."""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

_FUNCTIONS_AND_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "histogram_quantile",
    "abs", "absent", "absent_over_time", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max", "exp",
    "ln", "log2", "log10", "sqrt", "time", "timestamp", "vector", "scalar", "sort", "sort_desc", "label_replace",
    "label_join", "predict_linear", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "quantile_over_time", "stddev_over_time", "holt_winters", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range / subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {n for n in names if n.lower() not in _FUNCTIONS_AND_KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", n)}


def dashboard_expressions(path: Path = HERE / "grafana-dashboard.json") -> list[str]:
    return [t["expr"] for p in json.loads(path.read_text())["panels"] for t in p.get("targets", [])]


def rule_expressions(path: Path = HERE / "alerts.yml") -> list[str]:
    """`expr:` values of a rules file (folded `|` blocks joined), without a YAML library."""
    exprs, block, indent = [], None, 0
    for line in path.read_text().splitlines():
        if block is not None:
            if line.strip() and len(line) - len(line.lstrip()) > indent:
                block.append(line.strip())
                continue
            exprs.append(" ".join(block))
            block = None
        m = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", line)
        if m:
            if m.group(2).strip() in ("|", ">", "|-", ">-"):
                block, indent = [], len(m.group(1))
            else:
                exprs.append(m.group(2).strip())
    if block is not None:
        exprs.append(" ".join(block))
    return exprs


def referenced_names() -> set[str]:
    """Every metric the dashboard and the alert rules read (`up` is Prometheus's own)."""
    return {n for e in dashboard_expressions() + rule_expressions() for n in metric_names(e)} - {"up"}
