"""Domain errors of the training service; each knows its gRPC status."""

from __future__ import annotations

from hemovision_grpc_server import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable


class InvalidTrainingConfig(InvalidArgument):
    """The training configuration (data set, epochs, ...) cannot be used."""


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"training job {job_id} not found")


class VersionNotFound(NotFound):
    def __init__(self, name: str, version: int | None = None) -> None:
        if version is None:
            super().__init__(f"model {name!r} has no active version")
        else:
            super().__init__(f"model {name!r} version {version} not found")


class RolloutNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} has no rollout")


class JobNotCancellable(FailedPrecondition):
    """The job already ended."""


class QualityGateRefused(FailedPrecondition):
    """Activation refused by the quality gate; the message carries the numbers."""


class VersionDeprecated(FailedPrecondition):
    """The version is deprecated (or is the active one and cannot be deprecated)."""


class AdaptationRefused(FailedPrecondition):
    """An adaptation cannot start or a rollback cannot happen now; the message says why."""


class RolloutRefused(FailedPrecondition):
    """A rollout cannot start, be promoted or aborted now; the message says why."""


class ForbiddenForRole(PermissionDenied):
    """The caller's role may not do this."""


class BrokerUnavailable(Unavailable):
    """Redis (the Celery broker) is unreachable."""


__all__ = [
    "AdaptationRefused",
    "BrokerUnavailable",
    "ForbiddenForRole",
    "InvalidTrainingConfig",
    "JobNotCancellable",
    "JobNotFound",
    "QualityGateRefused",
    "RolloutNotFound",
    "RolloutRefused",
    "VersionDeprecated",
    "VersionNotFound",
]
