"""Client side: one channel per peer, created once and reused; a deadline on every call."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Default per-call deadline; callers pass `timeout=` explicitly where a call is known slow.
DEFAULT_TIMEOUT_S = 10.0


def create_channel(address: str, *, max_message_mb: int = 32) -> grpc.aio.Channel:
    """An insecure aio channel with keepalive and message limits matching our servers.

    Calls are spread round-robin over every address the name resolves to: with
    `dns:///inference:50053` and a headless Kubernetes Service that is every ready pod
    (servers end connections after `max_connection_age`, so new pods are picked up).
    One address (local runs) behaves like pick-first."""
    max_bytes = max_message_mb * 1024 * 1024
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # Reconnect quickly after a peer restarts instead of the default 20 s+ backoff.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
            ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
        ],
    )


async def wait_for_health(address: str, service: str = "", *, timeout: float = 30.0) -> None:
    """Blocks until `service` at `address` answers SERVING; raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as exc:
                last = exc.code().name
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{address} ({service or 'overall'}) not SERVING after {timeout:.0f}s (last: {last})")
