"""Test data for the history tests: tiny real PNGs, valid predictions, callers with real tokens."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_contracts import CLASS_NAMES, origin_metadata
from hemovision_testkit.tokens import TokenFactory
from hemovision_database import as_role  # noqa: F401 - the tests import it from here
from hemovision_tokens import bearer_metadata

TOKENS = TokenFactory()


def png_bytes(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A real (tiny) RGB PNG, written without Pillow."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def probabilities_for(label: str, confidence: float) -> dict[str, float]:
    rest = (1.0 - confidence) / (len(CLASS_NAMES) - 1)
    return {c: (confidence if c == label else rest) for c in CLASS_NAMES}


def make_prediction(
    label: str = "neutrophil",
    confidence: float = 0.9,
    *,
    needs_review: bool = False,
    model_version: int = 1,
    sample_id: str = "",
    batch_id: str = "",
) -> history_pb2.Prediction:
    return history_pb2.Prediction(
        label=label,
        confidence=confidence,
        probabilities=probabilities_for(label, confidence),
        needs_review=needs_review,
        review_reasons=["low_confidence"] if needs_review else [],
        model=common_pb2.ModelRef(name="hemovision", version=model_version),
        timings_ms={"preprocess": 1.5, "inference": 7.25},
        image_sha256="ab" * 32,
        filename="cell.png",
        sample_id=sample_id,
        temperature=1.3,
        ood_score=0.2,
        batch_id=batch_id,
    )


@dataclass
class User:
    """A caller: its ids and the metadata carrying its real signed token."""

    user_id: str
    organization_id: str
    role: str
    metadata: tuple

    @classmethod
    def new(cls, *, organization_id: str | None = None, role: str = "lab_user", act: str | None = None) -> User:
        """`act`: a service's own token (the `act` claim), e.g. auth appending audit events."""
        user_id = str(uuid.uuid4())
        if organization_id is None:
            organization_id = "" if role in ("ml_engineer", "platform_admin") else str(uuid.uuid4())
        token = TOKENS.issue(user_id=user_id, organization_id=organization_id, role=role, act=act)
        return cls(user_id=user_id, organization_id=organization_id, role=role, metadata=bearer_metadata(token))

    def from_ip(self, client_ip: str) -> tuple:
        """This caller's metadata plus the request-origin metadata the gateway adds."""
        return self.metadata + origin_metadata(client_ip, "pytest")

    def colleague(self, role: str = "lab_user") -> User:
        return User.new(organization_id=self.organization_id, role=role)


@asynccontextmanager
async def running_history(settings, redis_url: str) -> AsyncIterator[history_pb2_grpc.HistoryServiceStub]:
    """A real in-process history server on `settings` (port 0, a local blob store) and a stub
    on it; stopped on exit."""
    from hemovision_grpc_server import create_channel
    from hemovision_history.blobstore import LocalBlobStore
    from hemovision_history.server import create_server

    server = await create_server(settings, verifier=TOKENS.verifier(redis_url=redis_url),
                                 blobs=LocalBlobStore(settings.blob_root))
    channel = create_channel(f"127.0.0.1:{server.port}")
    try:
        yield history_pb2_grpc.HistoryServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)
