"""Safe rollouts (canary / shadow) and their live statistics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway.schemas.common import ResponseModel, timestamp

RolloutMode = Literal["canary", "shadow", "unknown"]
RolloutStatus = Literal["running", "promoted", "aborted", "unknown"]
ROLLOUT_MODE: dict[int, RolloutMode] = {
    training_pb2.ROLLOUT_MODE_CANARY: "canary",
    training_pb2.ROLLOUT_MODE_SHADOW: "shadow",
}
ROLLOUT_MODE_PB = {v: k for k, v in ROLLOUT_MODE.items()}
ROLLOUT_STATUS: dict[int, RolloutStatus] = {
    training_pb2.ROLLOUT_STATUS_RUNNING: "running",
    training_pb2.ROLLOUT_STATUS_PROMOTED: "promoted",
    training_pb2.ROLLOUT_STATUS_ABORTED: "aborted",
}


class RolloutVersionStats(ResponseModel):
    """Live numbers of one version, summed over every inference replica."""

    role: Literal["baseline", "candidate"] = Field(description="baseline = the active version at start")
    version: int = Field(examples=[3])
    requests: int = Field(description="model calls it answered (shadow: the candidate's background runs)")
    cells: int = Field(description="images in those calls")
    latency_p50_ms: float | None = Field(description="median model-server round trip per call; null before any")
    latency_p95_ms: float | None


class RolloutStats(ResponseModel):
    versions: list[RolloutVersionStats] = Field(description="baseline first, then the candidate")
    agreement_rate: float | None = Field(
        description="shadow: share of compared cells with the same top label on both versions; null before any "
                    "(canary requests are answered by one version only, so there is nothing to compare)")
    agree_cells: int
    compared_cells: int
    shadow_dropped: int = Field(description="shadow runs dropped because the bounded background queue was busy")
    shadow_skipped: int = Field(description="shadow runs skipped: the candidate reads another preprocessing")
    shadow_failed: int = Field(description="shadow runs whose model call failed (no request failed for it)")
    available: bool = Field(description="false when the statistics store could not be read")

    @classmethod
    def from_pb(cls, s: training_pb2.RolloutStats) -> RolloutStats:
        return cls(
            versions=[RolloutVersionStats(
                role="candidate" if v.role == "candidate" else "baseline", version=v.version, requests=v.requests,
                cells=v.cells, latency_p50_ms=round(v.latency_p50_ms, 2) if v.requests else None,
                latency_p95_ms=round(v.latency_p95_ms, 2) if v.requests else None) for v in s.versions],
            agreement_rate=round(s.agreement_rate, 4) if s.compared_cells else None,
            agree_cells=s.agree_cells, compared_cells=s.compared_cells, shadow_dropped=s.shadow_dropped,
            shadow_skipped=s.shadow_skipped, shadow_failed=s.shadow_failed, available=s.available,
        )


class Rollout(ResponseModel):
    """A candidate version beside the active one: a canary share of the platform-routed requests,
    or a shadow whose answers are only compared."""

    id: str
    model_name: str = Field(examples=["hemovision"])
    candidate_version: int = Field(examples=[3])
    baseline_version: int = Field(examples=[2], description="the active version when it started")
    mode: RolloutMode = Field(examples=["canary"])
    canary_percent: int | None = Field(examples=[10], description="canary: percent of requests; null for shadow")
    status: RolloutStatus = Field(examples=["running"])
    started_by: str
    started_at: str | None
    start_reason: str
    ended_by: str | None
    ended_at: str | None
    end_reason: str | None
    stats: RolloutStats | None = Field(description="live statistics (null when not read)")

    @classmethod
    def from_pb(cls, r: training_pb2.Rollout) -> Rollout:
        mode = ROLLOUT_MODE.get(r.mode, "unknown")
        return cls(
            id=r.id, model_name=r.model_name, candidate_version=r.candidate_version,
            baseline_version=r.baseline_version, mode=mode,
            canary_percent=r.canary_percent if mode == "canary" else None,
            status=ROLLOUT_STATUS.get(r.status, "unknown"), started_by=r.started_by,
            started_at=timestamp(r.started_at), start_reason=r.start_reason, ended_by=r.ended_by or None,
            ended_at=timestamp(r.ended_at), end_reason=r.end_reason or None,
            stats=RolloutStats.from_pb(r.stats) if r.HasField("stats") else None,
        )
