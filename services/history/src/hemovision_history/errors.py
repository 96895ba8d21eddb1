"""Domain errors of the history service; each knows its gRPC status."""

from __future__ import annotations

from hemovision_contracts import needs_role_message
from hemovision_grpc_server import InvalidArgument, NotFound, PermissionDenied, Unavailable


class PredictionNotFound(NotFound):
    def __init__(self, prediction_id: str) -> None:
        super().__init__(f"prediction {prediction_id} not found")


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} not found")


class BlobNotFound(NotFound):
    def __init__(self, prediction_id: str, kind: str) -> None:
        super().__init__(f"prediction {prediction_id} has no stored {kind}")


class DatabaseUnavailable(Unavailable):
    """PostgreSQL could not be reached or dropped the connection (a restart): retryable. A record
    whose commit was not confirmed may have been stored; retrying with the same idempotency key
    returns that record instead of storing a second one."""

    def __init__(self) -> None:
        super().__init__("the history database is unavailable right now; try again")


class InvalidRequest(InvalidArgument):
    """A request that fails validation; the message says which field and why."""


class InvalidCursor(InvalidArgument):
    def __init__(self) -> None:
        super().__init__("invalid page cursor")


class NoOrganization(PermissionDenied):
    def __init__(self) -> None:
        super().__init__("this action needs a user that belongs to an organization")


class RoleRequired(PermissionDenied):
    def __init__(self, roles: tuple[str, ...]) -> None:
        super().__init__(needs_role_message(roles))


class ServiceTokenRequired(PermissionDenied):
    def __init__(self, services: list[str]) -> None:
        super().__init__(f"only a service token of {', '.join(services) or 'an allowed service'} may append audit events")


__all__ = [
    "BatchNotFound",
    "BlobNotFound",
    "InvalidCursor",
    "InvalidRequest",
    "NoOrganization",
    "PredictionNotFound",
    "RoleRequired",
    "ServiceTokenRequired",
]
