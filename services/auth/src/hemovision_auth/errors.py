"""Domain errors of the auth service; each knows its gRPC status."""

from hemovision_grpc_server import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidCredentials",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
]


class InvalidCredentials(Unauthenticated):
    """Wrong e-mail or password; never says which."""

    def __init__(self) -> None:
        super().__init__("invalid e-mail or password")
