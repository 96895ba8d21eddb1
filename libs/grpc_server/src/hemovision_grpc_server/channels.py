"""Client side: one channel per peer, created once and reused; a deadline on every call.
Every channel is plaintext or mutual TLS as the HV_TLS_* settings say (tls.py)."""

from __future__ import annotations

import asyncio
import json
import time

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hemovision_telemetry.tracing import exporting
from opentelemetry import trace

from hemovision_grpc_server.tls import TlsSettings, load_tls

# Default per-call deadline; callers pass `timeout=` explicitly where a call is known slow.
DEFAULT_TIMEOUT_S = 10.0


def create_channel(address: str, *, max_message_mb: int = 32, tls: TlsSettings | None = None) -> grpc.aio.Channel:
    """An aio channel with keepalive and message limits matching our servers: plaintext, or mutual
    TLS when `tls` (default: the HV_TLS_* environment) is set (raises TlsError when it is half set).

    Calls are spread round-robin over every address the name resolves to: with
    `dns:///inference:50053` and a headless Kubernetes Service that is every ready pod
    (servers end connections after `max_connection_age`, so new pods are picked up).
    One address (local runs) behaves like pick-first."""
    max_bytes = max_message_mb * 1024 * 1024
    channel = _aio_channel(
        address,
        tls,
        [
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
    # Every call carries the caller's trace context: OpenTelemetry's client interceptor (patched
    # into grpc.aio by configure_tracing) when spans are exported, else just the traceparent.
    return channel if exporting() else TraceContextChannel(channel)


class _TraceContextCallable:
    """A multi-callable that adds the active trace context to the call's metadata."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, request: Any, *, metadata: Any = None, **kwargs: Any) -> Any:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
            metadata = (*(metadata or ()), ("traceparent", traceparent))
        return self._inner(request, metadata=metadata, **kwargs)


class TraceContextChannel(grpc.aio.Channel):
    """A grpc.aio.Channel whose calls carry the active W3C trace context (`traceparent` only, ids
    only: no client span, no tracestate). Used when nothing is exported: OpenTelemetry's aio client interceptor costs
    far more per call (docs/operations.md "Tracing"). Everything else is the wrapped channel's."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _TraceContextCallable(self._channel.unary_unary(*args, **kwargs))

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _TraceContextCallable(self._channel.unary_stream(*args, **kwargs))

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _TraceContextCallable(self._channel.stream_unary(*args, **kwargs))

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _TraceContextCallable(self._channel.stream_stream(*args, **kwargs))

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    async def __aenter__(self) -> TraceContextChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()


def _aio_channel(address: str, tls: TlsSettings | None, options: list[tuple[str, object]]) -> grpc.aio.Channel:
    material = load_tls(tls)
    if material is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, material.channel_credentials(), options=options)


def create_blocking_channel(address: str, *, tls: TlsSettings | None = None) -> grpc.Channel:
    """A synchronous channel (command lines, container health checks), plaintext or mutual TLS
    like create_channel()."""
    material = load_tls(tls)
    if material is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, material.channel_credentials())


async def wait_for_health(address: str, service: str = "", *, timeout: float = 30.0,
                          tls: TlsSettings | None = None) -> None:
    """Blocks until `service` at `address` answers SERVING; raises TimeoutError otherwise.
    Plaintext or mutual TLS like create_channel()."""
    deadline = time.monotonic() + timeout
    last: object = None
    async with _aio_channel(address, tls, []) as channel:
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
