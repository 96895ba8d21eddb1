"""Drift: an organization's recent predictions against its model version's reference.

The reference (histograms over PBC val, written by training at export or registration) is read
from Redis, where training publishes it (hemovision_contracts.drift.reference_key); the live
histograms come from PostgreSQL (repository/drift.py); the score is the population stability
index per component (hemovision_contracts.drift). No gRPC here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hemovision_contracts import ML_ENGINEER, PLATFORM_ADMIN, drift

from hemovision_history import domain
from hemovision_history.errors import NoOrganization
from hemovision_history.repository.drift import DriftRepository, Key, LiveWindow

log = logging.getLogger(__name__)


class ReferenceSource(Protocol):
    def get(self, model_name: str, version: int) -> dict[str, Any] | None: ...


class RedisReferences:
    """References as training publishes them (JSON under reference_key), cached in the process:
    found ones for `ttl_s` (a version's reference never changes), missing ones for `miss_ttl_s`."""

    def __init__(self, redis_url: str, *, ttl_s: float = 600.0, miss_ttl_s: float = 30.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._ttl, self._miss_ttl = ttl_s, miss_ttl_s
        self._cache: dict[tuple[str, int], tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def get(self, model_name: str, version: int) -> dict[str, Any] | None:
        key = (model_name, int(version))
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        ref: dict[str, Any] | None = None
        try:
            raw = self._redis.get(drift.reference_key(model_name, version))
            if raw is not None:
                ref = drift.validate_reference(json.loads(raw))
        except drift.InvalidReference as exc:
            log.warning("drift reference of %s %s is invalid: %s", model_name, version, exc)
        except Exception as exc:  # noqa: BLE001 - Redis down: no reference now, never a failed call
            log.warning("drift reference of %s %s not read: %s", model_name, version, exc)
            return hit[1] if hit is not None else None
        with self._lock:
            self._cache[key] = (now + (self._ttl if ref is not None else self._miss_ttl), ref)
        return ref

    def close(self) -> None:
        self._redis.close()


@dataclass(frozen=True)
class DriftHistogram:
    component: str
    bins: list[str]
    live: list[float]
    reference: list[float]


@dataclass(frozen=True)
class DriftComponent:
    component: str
    score: float
    status: str


@dataclass(frozen=True)
class OrganizationDrift:
    organization_id: str
    model_name: str
    model_version: int
    cells: int
    score: float
    status: str
    components: list[DriftComponent]
    histograms: list[DriftHistogram] = field(default_factory=list)
    review_rate: float = 0.0
    last_cell_at: datetime | None = None


@dataclass(frozen=True)
class DriftReport:
    items: list[OrganizationDrift]
    window_start: datetime
    window_days: int = drift.WINDOW_DAYS
    max_cells: int = drift.WINDOW_MAX_CELLS
    min_cells: int = drift.MIN_CELLS
    watch_threshold: float = drift.WATCH_THRESHOLD
    drifting_threshold: float = drift.DRIFTING_THRESHOLD


def _bin_names(edges: list[float]) -> list[str]:
    bounds = [-math.inf, *edges, math.inf]
    return [f"[{_fmt(lo)}, {_fmt(hi)})" for lo, hi in zip(bounds, bounds[1:])]


def _fmt(x: float) -> str:
    return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:g}"


def _shares(counts: list[int] | list[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def live_counts(ref: dict[str, Any], live: LiveWindow) -> dict[str, list[int]]:
    """The live window's counts over the reference's bins (class_mix in its label order; a label
    the reference does not know cannot occur: history only stores the platform's label set)."""
    comps = ref["components"]
    return {
        "class_mix": [live.class_mix.get(lab, 0) for lab in comps["class_mix"]["labels"]],
        "confidence": [live.confidence.get(i, 0) for i in range(len(comps["confidence"]["edges"]) + 1)],
        "ood_score": [live.ood_score.get(i, 0) for i in range(len(comps["ood_score"]["edges"]) + 1)],
    }


def evaluate(key: Key, live: LiveWindow, ref: dict[str, Any] | None, *, histograms: bool) -> OrganizationDrift:
    org, name, version = key
    common = dict(organization_id=org, model_name=name, model_version=version, cells=live.cells,
                  review_rate=live.flagged / live.cells if live.cells else 0.0, last_cell_at=live.last_cell_at)
    if ref is None or live.cells < drift.MIN_CELLS:
        status = drift.NO_REFERENCE if ref is None else drift.TOO_FEW
        return OrganizationDrift(**common, score=0.0, status=status,
                                 components=[DriftComponent(c, 0.0, status) for c in drift.COMPONENTS])
    counts = live_counts(ref, live)
    scores = drift.score_components(ref, counts)
    overall = drift.overall(scores)
    hists: list[DriftHistogram] = []
    if histograms:
        comps = ref["components"]
        for c in drift.COMPONENTS:
            bins = comps[c]["labels"] if c == "class_mix" else _bin_names([float(e) for e in comps[c]["edges"]])
            hists.append(DriftHistogram(c, list(bins), _shares(counts[c]), _shares(comps[c]["counts"])))
    return OrganizationDrift(**common, score=overall, status=drift.status_of(overall),
                             components=[DriftComponent(c, scores[c], drift.status_of(scores[c]))
                                         for c in drift.COMPONENTS],
                             histograms=hists)


class DriftService:
    def __init__(self, repo: DriftRepository, references: ReferenceSource, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), metrics_cache_s: float = 60.0) -> None:
        self.repo, self.references, self.clock = repo, references, clock
        self._metrics_cache_s = metrics_cache_s
        self._metrics: tuple[float, list[tuple[tuple[str, str], float]]] | None = None
        self._metrics_lock = threading.Lock()

    def _ood_edges(self, name: str, version: int) -> list[float] | None:
        ref = self.references.get(name, version)
        return [float(e) for e in ref["components"]["ood_score"]["edges"]] if ref else None

    def compute(self, *, organization_id: str | None, histograms: bool) -> DriftReport:
        since = self.clock() - timedelta(days=drift.WINDOW_DAYS)
        windows = self.repo.live_windows(since=since, max_cells=drift.WINDOW_MAX_CELLS,
                                         confidence_edges=drift.CONFIDENCE_EDGES, ood_edges=self._ood_edges,
                                         organization_id=organization_id)
        items = [evaluate(k, w, self.references.get(k[1], k[2]), histograms=histograms)
                 for k, w in windows.items()]
        items.sort(key=lambda d: (d.organization_id, -d.cells, d.model_name, d.model_version))
        return DriftReport(items=items, window_start=since)

    async def report(self, caller: domain.Caller) -> DriftReport:
        """An organization's members: its own entries with histograms; platform staff: every
        organization's scores and counts only."""
        if caller.organization_id:
            return await asyncio.to_thread(self.compute, organization_id=caller.organization_id, histograms=True)
        if caller.role in (PLATFORM_ADMIN, ML_ENGINEER):
            return await asyncio.to_thread(self.compute, organization_id=None, histograms=False)
        raise NoOrganization()

    def metric_values(self) -> list[tuple[tuple[str, str], float]]:
        """hemovision_drift_score{organization, component}: per organization, the scored entry with
        the most cells (its current version); components plus "overall". Cached `metrics_cache_s`
        so that a scrape every 15 s does not re-read a week of predictions."""
        now = time.monotonic()
        with self._metrics_lock:
            if self._metrics is not None and self._metrics[0] > now:
                return self._metrics[1]
            best: dict[str, OrganizationDrift] = {}
            for item in self.compute(organization_id=None, histograms=False).items:
                if item.status in (drift.TOO_FEW, drift.NO_REFERENCE):
                    continue
                if item.organization_id not in best or item.cells > best[item.organization_id].cells:
                    best[item.organization_id] = item
            values = []
            for org, item in sorted(best.items()):
                values.append(((org, "overall"), item.score))
                values.extend(((org, c.component), c.score) for c in item.components)
            self._metrics = (now + self._metrics_cache_s, values)
            return values
