"""Safe rollouts (canary / shadow): the live statistics every inference replica writes and the
training service reads back for the registry page, and the event that announces a change.

Statistics live in one Redis hash per rollout (ROLLOUT_STATS_KEY), incremented by every replica
(HINCRBY, so replicas add up): fields below, one set per role ("baseline" = the active version
at start, "candidate" = the version rolling out). Latency is a histogram over LATENCY_BOUNDS_MS
(the model-server round trip of one request, milliseconds); percentiles are read from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# Redis pub/sub channel: a rollout started, was promoted or aborted. Inference replicas re-read the
# registry at once (they also poll it); the registry stays the only source of truth.
ROLLOUT_CHANNEL = "hv:models:rollout"
# Statistics are kept this long after the last write (the rollout record itself is in PostgreSQL).
ROLLOUT_STATS_TTL_S = 30 * 24 * 3600

ROLES = ("baseline", "candidate")
MODES = ("canary", "shadow")
CANARY_PERCENT_MIN, CANARY_PERCENT_MAX = 1, 50

# Upper bounds (ms) of the latency buckets; the last bucket is everything above.
LATENCY_BOUNDS_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000)


def rollout_stats_key(rollout_id: str) -> str:
    return f"hv:rollout:{rollout_id}:stats"


# Hash fields. requests:<role> = model calls answered by that role's version (in shadow mode the
# candidate's are the shadow runs); cells:<role> = images in them.
def requests_field(role: str) -> str:
    return f"requests:{role}"


def cells_field(role: str) -> str:
    return f"cells:{role}"


def latency_field(role: str, bucket: int) -> str:
    return f"latency:{role}:{bucket}"


AGREE_FIELD = "agree"  # shadow: cells whose top label was the same on both versions
DISAGREE_FIELD = "disagree"
SHADOW_DROPPED_FIELD = "shadow_dropped"  # shadow runs not made: the bounded shadow queue was full
SHADOW_SKIPPED_FIELD = "shadow_skipped"  # not comparable: the candidate reads another preprocessing
SHADOW_FAILED_FIELD = "shadow_failed"  # the candidate's call failed (never the request)


def latency_bucket(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


def percentile_ms(counts: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram (counts per bucket, len(bounds) + 1), linearly
    interpolated inside its bucket; None when empty. The open last bucket answers its lower bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            lower = 0.0 if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
            if i >= len(LATENCY_BOUNDS_MS):
                return lower
            upper = float(LATENCY_BOUNDS_MS[i])
            return lower + (upper - lower) * max(0.0, rank - seen) / n
        seen += n
    return float(LATENCY_BOUNDS_MS[-1])


def read_stats(raw: Mapping[bytes | str, bytes | str]) -> dict:
    """The hash as numbers: {"requests": {role: n}, "cells": {...}, "latency": {role: [counts]},
    "agree", "disagree", "shadow_dropped", "shadow_skipped", "shadow_failed"}."""
    fields = {(k.decode() if isinstance(k, bytes) else k): int(float(v)) for k, v in raw.items()}
    out: dict = {"requests": {}, "cells": {}, "latency": {}}
    for role in ROLES:
        out["requests"][role] = fields.get(requests_field(role), 0)
        out["cells"][role] = fields.get(cells_field(role), 0)
        out["latency"][role] = [fields.get(latency_field(role, i), 0) for i in range(len(LATENCY_BOUNDS_MS) + 1)]
    for name in (AGREE_FIELD, DISAGREE_FIELD, SHADOW_DROPPED_FIELD, SHADOW_SKIPPED_FIELD, SHADOW_FAILED_FIELD):
        out[name] = fields.get(name, 0)
    return out


def rollout_event(model_name: str, rollout_id: str, status: str) -> str:
    return json.dumps({"model_name": model_name, "rollout_id": rollout_id, "status": status})
