"""The one server lifecycle: Server.stop/close, serve() on SIGTERM, run() as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision_grpc_server import GrpcServiceSettings, Server, create_server, serve, wait_for_health

SERVICE = "test.v1.EchoService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _register(server: grpc.aio.Server) -> None:
    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(0.5)
        return b"done"

    handlers = {"Slow": grpc.unary_unary_rpc_method_handler(slow)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def _started() -> Server:
    return Server(await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register))


async def test_stop_drains_then_cancels_tasks_then_closes_newest_first():
    server = await _started()
    events: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            events.append("task cancelled")

    async def async_hook() -> None:
        events.append("added second")

    server.on_close(lambda: events.append("added first"))
    server.on_close(async_hook)
    server.start_task(forever(), name="background")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == SERVING
        in_flight = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Slow")(b"", timeout=5))
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop(2.0))
        # health says NOT_SERVING first, and a readiness callback cannot flip a stopping server back
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        await server.running.set_serving(True)
        check = await server.running.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), None)
        assert check.status == NOT_SERVING
        # the call in flight gets its grace period
        assert await in_flight == b"done"
        await stopping
    assert events == ["task cancelled", "added second", "added first"]
    await server.close()  # a second close does nothing
    assert len(events) == 3


async def test_a_failing_close_hook_does_not_stop_the_others(caplog):
    server = await _started()
    closed: list[str] = []

    def broken() -> None:
        raise RuntimeError("pool already gone")

    server.on_close(lambda: closed.append("engine"))
    server.on_close(broken)
    await server.stop(0)
    assert closed == ["engine"]
    assert "close hook failed" in caplog.text


async def test_serve_stops_gracefully_on_sigterm():
    server = await _started()
    closed: list[str] = []
    server.on_close(lambda: closed.append("closed"))
    serving = asyncio.create_task(serve(server, grace=1.0))
    await wait_for_health(f"127.0.0.1:{server.port}", SERVICE, timeout=5)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 10)
    assert server.running.stopping and closed == ["closed"]
    with pytest.raises(grpc.aio.AioRpcError):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)


CHILD = textwrap.dedent(
    f"""
    import sys
    import grpc
    from hemovision_grpc_server import GrpcServiceSettings, Server, create_server, run

    def register(server):
        pass

    async def create(settings):
        server = Server(await create_server(settings, service_names=[{SERVICE!r}], register=register))
        server.on_close(lambda: print("closed", flush=True))
        print(server.port, flush=True)
        return server

    run("lifecycle-test", GrpcServiceSettings(port=0, grace_seconds=1), create)
    print("exited", flush=True)
    """
)


async def test_run_serves_a_real_process_until_sigterm():
    """run(): logs + tracing + create + serve, as every server's `serve` command runs it."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60))
        await wait_for_health(f"127.0.0.1:{port}", SERVICE, timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.split() == ["closed", "exited"]
    assert "shutting down" in err  # the JSON log line from serve()
