"""Domain errors of the reports service."""

from __future__ import annotations

from hemovision_grpc_server import InvalidArgument, NotFound


class PredictionNotFound(NotFound):
    def __init__(self, prediction_id: str) -> None:
        super().__init__(f"prediction {prediction_id} not found")


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} not found")


class MissingId(InvalidArgument):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is required")
