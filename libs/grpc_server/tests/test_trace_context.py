"""Without an exporter (the default) every hop still carries the caller's trace: channels add the
`traceparent`, servers continue it while the handler runs (logs, lookups and onward calls share
the trace id), with no OpenTelemetry interceptor on either side."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_grpc_server import GrpcServiceSettings, create_channel, create_server
from hemovision_grpc_server.channels import TraceContextChannel
from hemovision_telemetry import configure_tracing, current_trace_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SERVICE = "hemovision.auth.v1.AuthService"


class Recorder(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    async def GetPublicKeys(self, request, context):
        self.seen.append((current_trace_id(), dict(context.invocation_metadata()).get("traceparent", "")))
        return auth_pb2.PublicKeySet()


@pytest.fixture(scope="module", autouse=True)
def traced():
    assert configure_tracing("grpc-server-test") is False


async def test_a_hop_carries_the_callers_trace():
    recorder = Recorder()
    server = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE],
                                 register=lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(recorder, s))
    channel = create_channel(f"127.0.0.1:{server.port}")
    assert isinstance(channel, TraceContextChannel) and isinstance(channel, grpc.aio.Channel)
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    try:
        token = otel_context.attach(extract({"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}))
        try:
            with trace.get_tracer("test").start_as_current_span("POST /api/v1/predictions") as http_span:
                await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5,
                                         metadata=(("authorization", "Bearer x"),))
        finally:
            otel_context.detach(token)
        await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5)  # outside any trace
    finally:
        await channel.close()
        await server.stop(0)
    (inside, traceparent), (outside, no_traceparent) = recorder.seen
    assert inside == TRACE_ID  # the handler runs in the caller's trace
    assert traceparent.split("-")[1:3] == [TRACE_ID, f"{http_span.get_span_context().span_id:016x}"]
    assert outside is not None and outside != TRACE_ID and no_traceparent == ""  # a trace of its own
