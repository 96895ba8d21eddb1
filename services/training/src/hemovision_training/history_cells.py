"""An organization's reviewed cells, read from the history service acting as the caller."""

from __future__ import annotations

import grpc

from hemovision_grpc_server import Unavailable, create_channel
from hemovision_tokens import bearer_metadata

# A reviewed cell's model image is a few kB: this bounds one adaptation's snapshot to ~100k cells.
MAX_EXPORT_BYTES = 512 * 1024 * 1024


class HistoryCellSource:
    """HistoryService.ExportReviewedDataset with the caller's token; one channel, one deadline."""

    def __init__(self, address: str, *, timeout_s: float = 120.0) -> None:
        self._address = address
        self._timeout = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub = None

    async def reviewed_cells(self, *, token: str) -> bytes:
        from hemovision.history.v1 import history_pb2, history_pb2_grpc

        if self._stub is None:
            self._channel = create_channel(self._address)
            self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        data = bytearray()
        try:
            async for chunk in self._stub.ExportReviewedDataset(
                history_pb2.ExportReviewedDatasetRequest(), metadata=bearer_metadata(token), timeout=self._timeout
            ):
                data += chunk.data
                if len(data) > MAX_EXPORT_BYTES:
                    raise Unavailable("the organization's reviewed cells exceed what one adaptation reads")
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"could not read the reviewed cells from history: {exc.code().name}: "
                              f"{exc.details()}") from None
        return bytes(data)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
