"""Audit events to the history service (HistoryService.RecordAuditEvent, acting as the caller).

The source of truth is training.audit_log, written in the same transaction as the registry
change; this forwards a copy so the platform's audit trail (history) shows it too.
"""

from __future__ import annotations

import json
import logging

import grpc

from hemovision_grpc_server import create_channel
from hemovision_tokens import bearer_metadata
from hemovision_training.registry import AuditEvent

log = logging.getLogger(__name__)


class HistoryAuditSink:
    """One channel to history, created once; every call has a deadline."""

    def __init__(self, address: str, *, timeout_s: float = 3.0) -> None:
        self._address = address
        self._timeout = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub = None

    def _get_stub(self):
        if self._stub is None:
            from hemovision.history.v1 import history_pb2_grpc

            self._channel = create_channel(self._address)
            self._stub = history_pb2_grpc.HistoryServiceStub(self._channel)
        return self._stub

    async def record(self, events: list[AuditEvent], *, token: str) -> list[int]:
        from hemovision.history.v1 import history_pb2

        if not self._address or not token:
            for ev in events:
                log.warning("audit event kept only in training.audit_log (no history address or token): %s %s",
                            ev.action, ev.target_id)
            return []
        delivered: list[int] = []
        stub = self._get_stub()
        for ev in events:
            try:
                await stub.RecordAuditEvent(
                    history_pb2.RecordAuditEventRequest(
                        action=ev.action,
                        target_type=ev.target_type,
                        target_id=ev.target_id,
                        details_json=json.dumps(ev.details, default=str),
                    ),
                    metadata=bearer_metadata(token),
                    timeout=self._timeout,
                )
                delivered.append(ev.id)
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "history unreachable, audit event kept in training.audit_log only: %s %s (%s)",
                    ev.action, ev.target_id, exc.code().name,
                )
        return delivered

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
