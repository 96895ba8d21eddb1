"""SQL of drift: per organization and model version, the histograms of its recent predictions.

All counting is done by PostgreSQL (GROUPING SETS, width_bucket over the reference's bin edges) in
two passes over the window; the window is the last `since` .. now, at most the newest `max_cells`
cells per organization (row_number over (organization_id, created_at DESC), served by the
(org, created_at) index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, text

Key = tuple[str, str, int]  # (organization_id, model_name, model_version)


@dataclass
class LiveWindow:
    """One organization's cells by one version in the window."""

    cells: int = 0
    flagged: int = 0
    last_cell_at: datetime | None = None
    class_mix: dict[str, int] = field(default_factory=dict)
    confidence: dict[int, int] = field(default_factory=dict)  # bucket -> count
    ood_score: dict[int, int] = field(default_factory=dict)


_WINDOW = """
WITH recent AS (
  SELECT organization_id, model_name, model_version, label, confidence, ood_score, needs_review, created_at,
         row_number() OVER (PARTITION BY organization_id ORDER BY created_at DESC, id DESC) AS rn
  FROM history.predictions
  WHERE created_at >= :since {org_filter}
), w AS (SELECT * FROM recent WHERE rn <= :max_cells)
"""


class DriftRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def live_windows(self, *, since: datetime, max_cells: int, confidence_edges: Sequence[float],
                     ood_edges: Callable[[str, int], Sequence[float] | None],
                     organization_id: str | None = None) -> dict[Key, LiveWindow]:
        """Histograms per (organization, model name, version); `organization_id` None = every
        organization (the metrics). `ood_edges(name, version)` gives a version's ood_score bin
        edges (its reference's), None when it has no reference (then no ood histogram)."""
        org_filter = "AND organization_id = :org" if organization_id is not None else ""
        window = _WINDOW.format(org_filter=org_filter)
        params: dict = {"since": since, "max_cells": max_cells, "org": organization_id,
                        "conf_edges": list(confidence_edges)}
        out: dict[Key, LiveWindow] = {}
        with self.engine.connect() as conn:
            # one pass over the window: totals, class mix and confidence bins as grouping sets
            # (GROUPING(label, cb): 3 = the totals row, 1 = a label row, 2 = a confidence-bin row)
            rows = conn.execute(text(window + """
                SELECT organization_id, model_name, model_version, label, cb, GROUPING(label, cb) AS g,
                       count(*) AS n, count(*) FILTER (WHERE needs_review) AS flagged, max(created_at) AS last_at
                FROM (SELECT *, width_bucket(confidence, CAST(:conf_edges AS double precision[])) AS cb FROM w) x
                GROUP BY GROUPING SETS ((organization_id, model_name, model_version),
                                        (organization_id, model_name, model_version, label),
                                        (organization_id, model_name, model_version, cb))"""), params).all()
            for r in rows:
                live = out.setdefault((r.organization_id, r.model_name, int(r.model_version)), LiveWindow())
                if r.g == 3:
                    live.cells, live.flagged, live.last_cell_at = int(r.n), int(r.flagged), r.last_at
                elif r.g == 1:
                    live.class_mix[r.label] = int(r.n)
                else:
                    live.confidence[int(r.cb)] = int(r.n)
            # a second pass for the ood_score bins: each version's own edges, joined in as a VALUES list
            edges = {(name, version): list(e) for name, version in sorted({(k[1], k[2]) for k in out})
                     if (e := ood_edges(name, version))}
            if edges:
                values = ", ".join(f"(:n{i}, :v{i}, CAST(:e{i} AS double precision[]))" for i in range(len(edges)))
                bind = {}
                for i, ((name, version), e) in enumerate(edges.items()):
                    bind |= {f"n{i}": name, f"v{i}": version, f"e{i}": e}
                for r in conn.execute(text(window + f"""
                    , e(model_name, model_version, edges) AS (VALUES {values})
                    SELECT w.organization_id, w.model_name, w.model_version, width_bucket(w.ood_score, e.edges) AS b,
                           count(*) AS n
                    FROM w JOIN e ON e.model_name = w.model_name AND e.model_version = w.model_version
                    GROUP BY 1, 2, 3, 4"""), params | bind):
                    out[(r.organization_id, r.model_name, int(r.model_version))].ood_score[int(r.b)] = int(r.n)
        return out
