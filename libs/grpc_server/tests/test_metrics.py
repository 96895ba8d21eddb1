"""RED metrics of every RPC, on a real in-process server: counted with the status the RPC really
ended with (the error mapping's, an abort's, a stream's), timed, and served on /metrics."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from hemovision_grpc_server import GrpcServiceSettings, NotFound, create_server
from hemovision_grpc_server.lifecycle import _metrics_port
from hemovision_telemetry.metrics import serve_metrics

SERVICE = "test.v1.MetricsService"


def _register(server: grpc.aio.Server) -> None:
    async def ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"ok"

    async def not_found(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise NotFound("prediction 42 not found")

    async def crash(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("boom")

    async def aborts(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")

    async def stream(request: bytes, context: grpc.aio.ServicerContext):
        yield b"a"
        yield b"b"

    handlers = {
        "Ok": grpc.unary_unary_rpc_method_handler(ok),
        "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "Aborts": grpc.unary_unary_rpc_method_handler(aborts),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def handled(method: str, code: str) -> float:
    return REGISTRY.get_sample_value(
        "grpc_server_handled_total", {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}) or 0.0


@pytest.fixture
async def running():
    server = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register)
    yield server
    await server.stop(0)


async def test_every_rpc_is_counted_with_its_final_status_and_timed(running):
    before = {(m, c): handled(m, c) for m, c in [("Ok", "OK"), ("NotFound", "NOT_FOUND"), ("Crash", "INTERNAL"),
                                                 ("Aborts", "RESOURCE_EXHAUSTED"), ("Stream", "OK")]}
    timed_before = REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", {"grpc_service": SERVICE, "grpc_method": "Ok"}) or 0.0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        for _ in range(3):
            assert await ch.unary_unary(f"/{SERVICE}/Ok")(b"", timeout=5) == b"ok"
        for method in ("NotFound", "Crash", "Aborts"):
            with pytest.raises(grpc.aio.AioRpcError):
                await ch.unary_unary(f"/{SERVICE}/{method}")(b"", timeout=5)
        assert [m async for m in ch.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=5)] == [b"a", b"b"]
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    after = {key: handled(*key) for key in before}
    assert {k: after[k] - before[k] for k in before} == {
        ("Ok", "OK"): 3, ("NotFound", "NOT_FOUND"): 1, ("Crash", "INTERNAL"): 1,
        ("Aborts", "RESOURCE_EXHAUSTED"): 1, ("Stream", "OK"): 1}
    assert REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", {"grpc_service": SERVICE, "grpc_method": "Ok"}) == timed_before + 3
    assert REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_code": "OK"}) >= 1
    assert REGISTRY.get_sample_value("grpc_server_in_flight_requests", {"grpc_service": SERVICE}) == 0


async def test_metrics_endpoint_serves_the_series(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        await ch.unary_unary(f"/{SERVICE}/Ok")(b"", timeout=5)
    endpoint = serve_metrics(0, host="127.0.0.1")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5).read().decode()
    finally:
        endpoint.close()
    assert f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Ok",grpc_service="{SERVICE}"}}' in body
    assert serve_metrics(-1) is None


def test_metrics_port_comes_from_the_topology_unless_set():
    assert _metrics_port("auth", GrpcServiceSettings()) == 9101
    assert _metrics_port("auth", GrpcServiceSettings(metrics_port=-1)) == -1
    assert _metrics_port("model-server", GrpcServiceSettings()) == -1  # on its REST port instead
    assert _metrics_port("not-in-topology", GrpcServiceSettings()) == -1
