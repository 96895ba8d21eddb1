"""Domain errors of the auth service; each knows its gRPC status."""

from hemovision_grpc_server import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidCredentials",
    "LockedOut",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class InvalidCredentials(Unauthenticated):
    """Wrong e-mail or password; never says which."""

    def __init__(self) -> None:
        super().__init__("invalid e-mail or password")


# Trailing metadata of a LockedOut answer: whole seconds until sign-in is possible again.
RETRY_AFTER_METADATA = "retry-after"


class LockedOut(ResourceExhausted):
    """Sign-in is locked after too many failed attempts (RESOURCE_EXHAUSTED; the servicer adds
    trailing metadata `retry-after: <seconds>`)."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        super().__init__(f"too many failed sign-ins; try again in {self.retry_after_s} s")
