"""Outgoing calls: history (records and stored images) and auth (the organization's name).

Every call forwards the caller's own bearer token, so history applies the caller's
organization scope, and carries a deadline. Channels are created once and reused."""

from __future__ import annotations

import logging

import grpc
from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_contracts import origin_metadata
from hemovision_grpc_server import create_channel
from hemovision_tokens import bearer_metadata

log = logging.getLogger(__name__)


class HistoryClient:
    def __init__(self, address: str, *, timeout: float) -> None:
        self._channel = create_channel(address)
        self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def get_prediction(self, token: str, prediction_id: str) -> history_pb2.Prediction:
        return await self._stub.GetPrediction(
            history_pb2.GetPredictionRequest(id=prediction_id), metadata=bearer_metadata(token), timeout=self._timeout
        )

    async def get_batch(self, token: str, batch_id: str) -> history_pb2.Batch:
        return await self._stub.GetBatch(
            history_pb2.GetBatchRequest(id=batch_id), metadata=bearer_metadata(token), timeout=self._timeout
        )

    async def list_batch_items(self, token: str, batch_id: str) -> list[history_pb2.BatchItem]:
        """Every item of the batch, in index order (follows the cursor)."""
        items: list[history_pb2.BatchItem] = []
        cursor = ""
        while True:
            page = await self._stub.ListBatchItems(
                history_pb2.ListBatchItemsRequest(batch_id=batch_id, page=common_pb2.PageRequest(limit=200, cursor=cursor)),
                metadata=bearer_metadata(token),
                timeout=self._timeout,
            )
            items.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                return items

    async def get_blob(self, token: str, prediction_id: str, kind: int) -> bytes | None:
        """The stored PNG, or None when nothing is stored (policy, retention)."""
        try:
            blob = await self._stub.GetPredictionBlob(
                history_pb2.GetPredictionBlobRequest(prediction_id=prediction_id, kind=kind),
                metadata=bearer_metadata(token),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return blob.data

    async def record_audit_event(self, token: str, *, action: str, target_type: str, target_id: str, details_json: str,
                                 client_ip: str = "", user_agent: str = "") -> None:
        """Appends an audit event as the caller, with the request origin the gateway forwarded."""
        await self._stub.RecordAuditEvent(
            history_pb2.RecordAuditEventRequest(action=action, target_type=target_type, target_id=target_id,
                                                details_json=details_json),
            metadata=bearer_metadata(token) + origin_metadata(client_ip, user_agent), timeout=self._timeout,
        )


class OrganizationNames:
    """The caller's organization name from auth GetMe; falls back to None (the report then
    shows the organization id) when auth is not configured or does not answer."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self._channel = create_channel(address) if address else None
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel) if self._channel else None
        self._timeout = timeout

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def name_for(self, token: str) -> str | None:
        if self._stub is None:
            return None
        try:
            me = await self._stub.GetMe(auth_pb2.GetMeRequest(), metadata=bearer_metadata(token), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            log.warning("organization name unavailable: %s", exc.code().name)
            return None
        return me.organization_name or None
