"""What every response model shares: timestamps, roles, the model reference, pages."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from hemovision_contracts import role_from_proto


def timestamp(value: Timestamp | None) -> str | None:
    """RFC 3339 UTC, or None for an unset timestamp."""
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime().replace(microsecond=(value.nanos // 1000)).isoformat() + "Z"


def role_name(role: int) -> str:
    return role_from_proto(role) or "unknown"


def rounded(values, digits: int = 6) -> dict[str, float]:
    """A protobuf map<string, double/float> as a dict of rounded floats."""
    return {k: round(float(v), digits) for k, v in values.items()}


class ResponseModel(BaseModel):
    """Base of every REST answer. Instances are built from protobuf messages by `from_pb` (the one
    place a message becomes JSON) and serialized by FastAPI straight to JSON bytes."""

    # An answer the gateway built is trusted: FastAPI checks only that it is an instance.
    model_config = ConfigDict(revalidate_instances="never")


class ModelRef(ResponseModel):
    """A model version by name and number."""

    name: str = Field(examples=["hemovision"])
    version: int = Field(examples=[1])


class StatusMessage(ResponseModel):
    """An accepted request with nothing else to say."""

    status: str = Field(examples=["sent"])
