"""Safe rollouts on the serving side (docs/serving.md, "Routing order" and "Safe rollouts"):

* the registry's running rollout (RolloutInfo), which the router follows like the active version;
* RolloutRecorder: live statistics per rollout (requests, cells and latency per role, shadow
  agreement), counted in process, added to the rollout's Redis hash every flush_s by every replica
  (HINCRBY: replicas add up; key and fields in hemovision_contracts.rollouts) and exported as
  Prometheus series;
* ShadowRunner: the candidate on the same preprocessed batch, in the background, at most
  max_inflight at a time; a run that finds no free slot is dropped (counted), never queued.
  A shadow never answers and never fails or waits the request it shadows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from hemovision_contracts import rollouts as contract
from hemovision_inference.errors import SignatureMissing
from hemovision_telemetry.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

BASELINE, CANDIDATE = contract.ROLES

ROLLOUT_REQUESTS = PromCounter(
    "hemovision_rollout_requests_total",
    "Model calls during a rollout, by rollout id and role (baseline / candidate; shadow runs count as candidate).",
    ["rollout", "role"])
ROLLOUT_AGREEMENT = PromCounter(
    "hemovision_rollout_agreement_total",
    "Shadow rollouts: cells compared, by whether both versions gave the same top label (agree = true / false).",
    ["rollout", "agree"])
ROLLOUT_LATENCY = Histogram(
    "hemovision_rollout_latency_seconds", "Model-server round trip of one call during a rollout, by role.",
    ["rollout", "role"], buckets=LATENCY_BUCKETS)
ROLLOUT_SHADOW_SKIPPED = PromCounter(
    "hemovision_rollout_shadow_skipped_total",
    "Shadow runs not made or not counted, by reason (dropped = busy, incompatible, failed).", ["rollout", "reason"])


@dataclass(frozen=True)
class RolloutInfo:
    """The registry's running rollout."""

    id: str
    candidate: int
    baseline: int
    mode: str  # canary | shadow
    percent: int  # canary share, 0 for shadow


class RolloutRecorder:
    """Counts in process; flush() adds them to Redis (one pipeline) and forgets them."""

    def __init__(self, redis_url: str | None, *, flush_s: float = 1.0) -> None:
        self.redis_url = redis_url
        self.flush_s = flush_s
        self.pending: dict[str, Counter[str]] = {}
        self._client = None
        self._error_logged = False

    def _add(self, rollout_id: str, field: str, n: int = 1) -> None:
        self.pending.setdefault(rollout_id, Counter())[field] += n

    def served(self, rollout_id: str, role: str, cells: int, ms: float) -> None:
        self._add(rollout_id, contract.requests_field(role))
        self._add(rollout_id, contract.cells_field(role), cells)
        self._add(rollout_id, contract.latency_field(role, contract.latency_bucket(ms)))
        ROLLOUT_REQUESTS.labels(rollout_id, role).inc()
        ROLLOUT_LATENCY.labels(rollout_id, role).observe(ms / 1000)

    def compared(self, rollout_id: str, agree: int, disagree: int) -> None:
        self._add(rollout_id, contract.AGREE_FIELD, agree)
        self._add(rollout_id, contract.DISAGREE_FIELD, disagree)
        ROLLOUT_AGREEMENT.labels(rollout_id, "true").inc(agree)
        ROLLOUT_AGREEMENT.labels(rollout_id, "false").inc(disagree)

    def skipped(self, rollout_id: str, reason: str) -> None:
        field = {"dropped": contract.SHADOW_DROPPED_FIELD, "incompatible": contract.SHADOW_SKIPPED_FIELD,
                 "failed": contract.SHADOW_FAILED_FIELD}[reason]
        self._add(rollout_id, field)
        ROLLOUT_SHADOW_SKIPPED.labels(rollout_id, reason).inc()

    async def flush(self) -> None:
        if not self.pending or not self.redis_url:
            return
        batch, self.pending = self.pending, {}
        try:
            if self._client is None:
                import redis.asyncio as aioredis

                self._client = aioredis.Redis.from_url(self.redis_url)
            async with self._client.pipeline(transaction=False) as pipe:
                for rollout_id, counts in batch.items():
                    key = contract.rollout_stats_key(rollout_id)
                    for field, n in counts.items():
                        if n:
                            pipe.hincrby(key, field, n)
                    pipe.expire(key, contract.ROLLOUT_STATS_TTL_S)
                await pipe.execute()
            self._error_logged = False
        except Exception as exc:  # noqa: BLE001 - statistics are best effort; Prometheus still has them
            if not self._error_logged:
                log.warning("rollout statistics not written to Redis", extra={"error": str(exc)[:300]})
                self._error_logged = True

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_s)
                await self.flush()
        finally:
            await self.flush()
            if self._client is not None:
                await self._client.aclose()


class ShadowRunner:
    """Runs the candidate on a batch the baseline already answered, in the background."""

    def __init__(self, router, model_server, recorder: RolloutRecorder, *, max_inflight: int = 2) -> None:
        self.router = router
        self.model_server = model_server
        self.recorder = recorder
        self.max_inflight = max_inflight
        self.inflight = 0
        self.tasks: set[asyncio.Task] = set()

    def submit(self, rollout: RolloutInfo, name: str, images: np.ndarray, explain: bool,
               baseline_labels: list[str]) -> bool:
        """Starts a shadow run now or drops it (False); never waits."""
        if not self.router.compatible(rollout.baseline, rollout.candidate):
            self.recorder.skipped(rollout.id, "incompatible")
            return False
        if self.inflight >= self.max_inflight:
            self.recorder.skipped(rollout.id, "dropped")
            return False
        self.inflight += 1
        self.router.hold_version(rollout.candidate)  # never unpinned under a shadow run
        task = asyncio.get_running_loop().create_task(self._run(rollout, name, images, explain, baseline_labels))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _run(self, rollout: RolloutInfo, name: str, images: np.ndarray, explain: bool,
                   baseline_labels: list[str]) -> None:
        try:
            meta = self.router.metadata(rollout.candidate)
            signature = "explain" if explain else "serving_default"
            started = time.perf_counter()
            try:
                prediction = await self.model_server.predict(name, rollout.candidate, signature, images,
                                                             ["probabilities"])
            except SignatureMissing:
                if not explain:
                    raise
                prediction = await self.model_server.predict(name, rollout.candidate, "serving_default",
                                                             images, ["probabilities"])
            ms = prediction.model_ms if prediction.model_ms else (time.perf_counter() - started) * 1000
            top = np.argmax(np.asarray(prediction.outputs["probabilities"]), axis=-1)
            labels = [meta.class_names[int(i)] for i in top]
            agree = sum(a == b for a, b in zip(labels, baseline_labels, strict=True))
            self.recorder.served(rollout.id, CANDIDATE, len(labels), ms)
            self.recorder.compared(rollout.id, agree, len(labels) - agree)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a shadow never fails anything
            self.recorder.skipped(rollout.id, "failed")
            log.info("shadow run failed", extra={"version": rollout.candidate, "error": str(exc)[:200]})
        finally:
            self.inflight -= 1
            self.router.release_version(rollout.candidate)

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
