"""The bootstrap: health, reflection and error mapping on a real in-process server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hemovision_contracts.topology import LIVENESS_HEALTH_SERVICE
from hemovision_grpc_server import GrpcServiceSettings, NotFound, create_server

SERVICE = "test.v1.EchoService"


def _register(server: grpc.aio.Server) -> None:
    async def not_found(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise NotFound("prediction 42 not found")

    async def crash(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("secret database password in this message")

    async def stream_crash(request: bytes, context: grpc.aio.ServicerContext):
        yield b"first"
        raise NotFound("gone mid-stream")

    handlers = {
        "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "StreamCrash": grpc.unary_stream_rpc_method_handler(stream_crash),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def running():
    server = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register)
    yield server
    await server.stop(0)


async def test_health_serving_then_not_serving_on_stop(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await running.set_serving(False)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # not ready is not dead: the liveness name stays SERVING, so Kubernetes does not restart it
        live = await stub.Check(health_pb2.HealthCheckRequest(service=LIVENESS_HEALTH_SERVICE), timeout=5)
        assert live.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_services(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(requests(), timeout=5):
            names = {s.name for s in reply.list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= names
            break


async def test_service_error_maps_to_its_code(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        call = ch.unary_unary(f"/{SERVICE}/NotFound")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "prediction 42 not found"


async def test_unknown_error_is_internal_and_not_leaked(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        call = ch.unary_unary(f"/{SERVICE}/Crash")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "password" not in (info.value.details() or "")


async def test_stream_error_maps_after_first_item(running):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        call = ch.unary_stream(f"/{SERVICE}/StreamCrash")
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for item in call(b"", timeout=5):
                got.append(item)
        assert got == [b"first"]
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_channels_spread_calls_over_every_resolved_address():
    """create_channel balances round-robin: two servers behind one target both get calls
    (what a headless Kubernetes Service + dns:/// gives the gateway)."""
    from hemovision_grpc_server import create_channel

    hits = {"a": 0, "b": 0}

    def register_for(name: str):
        def register(server: grpc.aio.Server) -> None:
            async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                hits[name] += 1
                return name.encode()

            handlers = {"Who": grpc.unary_unary_rpc_method_handler(who)}
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        return register

    a = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=register_for("a"))
    b = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=register_for("b"))
    try:
        async with create_channel(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}") as ch:
            who = ch.unary_unary(f"/{SERVICE}/Who")
            await ch.channel_ready()
            for _ in range(20):
                await who(b"", timeout=5)
        assert hits["a"] >= 5 and hits["b"] >= 5, hits
    finally:
        await a.stop(0)
        await b.stop(0)


async def test_text_with_a_nul_character_is_invalid_argument_before_the_servicer_runs():
    """PostgreSQL text cannot hold U+0000: any string field (nested, repeated, map) carrying one is
    refused at the door with the field's path; bytes fields may hold anything."""
    from google.protobuf import struct_pb2

    from hemovision.history.v1 import history_pb2
    from hemovision_grpc_server.text_fields import nul_field

    seen: list[object] = []

    def _register_echo(server: grpc.aio.Server) -> None:
        async def echo(request, context):
            seen.append(request)
            return request

        handler = grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=history_pb2.ListPredictionsRequest.FromString,
            response_serializer=history_pb2.ListPredictionsRequest.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),))

    server = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register_echo)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            call = ch.unary_unary(f"/{SERVICE}/Echo", request_serializer=history_pb2.ListPredictionsRequest.SerializeToString,
                                  response_deserializer=history_pb2.ListPredictionsRequest.FromString)
            ok = history_pb2.ListPredictionsRequest()
            ok.filter.sample_id = "slide 7"
            assert (await call(ok, timeout=5)).filter.sample_id == "slide 7"
            bad = history_pb2.ListPredictionsRequest()
            bad.filter.sample_id = "slide\x007"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(bad, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == "filter.sample_id contains a NUL character (U+0000), which text cannot hold"
            assert len(seen) == 1  # the servicer never saw the bad request
    finally:
        await server.stop(0)

    # the walk itself: repeated, map and nested message fields; bytes are not text
    s = struct_pb2.Struct()
    s.fields["note"].string_value = "a\x00b"
    assert nul_field(s) == "fields['note'].string_value"
    lv = struct_pb2.ListValue()
    lv.values.add().string_value = "fine"
    lv.values.add().string_value = "\x00"
    assert nul_field(lv) == "values[1].string_value"
    assert nul_field(struct_pb2.Value(string_value="clean")) is None
    blob = history_pb2.Blob(content_type="image/png", data=b"\x89PNG\x00\x00")
    assert nul_field(blob) is None
