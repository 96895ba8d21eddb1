"""CPU per unary gRPC call (client and server in this process, so both ends count), with no
exporter: plain vs the ids-only propagation HemoVision uses by default (TraceContextChannel +
ErrorInterceptor(trace_context=True)) vs OpenTelemetry's aio interceptors (what an exporter turns
on), in interleaved rounds. Every server has the MetricsInterceptor and ErrorInterceptor the real
ones have.

    python bench/tracing/hop.py [--rounds 15] [--calls 300]     # writes bench/results/tracing_hop.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_grpc_server.channels import TraceContextChannel
from hemovision_grpc_server.interceptors import ErrorInterceptor
from hemovision_grpc_server.metrics import MetricsInterceptor

_servers: list[grpc.aio.Server] = []


class _Keys(auth_pb2_grpc.AuthServiceServicer):
    async def GetPublicKeys(self, request, context):
        return auth_pb2.PublicKeySet()


async def _stub(ids_only: bool) -> auth_pb2_grpc.AuthServiceStub:
    server = grpc.aio.server(interceptors=[MetricsInterceptor(), ErrorInterceptor(trace_context=ids_only)])
    auth_pb2_grpc.add_AuthServiceServicer_to_server(_Keys(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _servers.append(server)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return auth_pb2_grpc.AuthServiceStub(TraceContextChannel(channel) if ids_only else channel)


async def main(rounds: int, calls: int) -> dict:
    trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
    stubs = {"plain": await _stub(False), "ids_only": await _stub(True)}
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer

    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    stubs["opentelemetry_interceptors"] = await _stub(False)
    tracer = trace.get_tracer("bench")

    async def run(stub, n: int) -> float:
        with tracer.start_as_current_span("request"):
            t0 = time.process_time()
            for _ in range(n):
                await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5)
            return (time.process_time() - t0) / n * 1e6

    for stub in stubs.values():
        await run(stub, 200)
    samples: dict[str, list[float]] = {name: [] for name in stubs}
    for _ in range(rounds):
        for name, stub in stubs.items():
            samples[name].append(await run(stub, calls))
    for server in _servers:
        await server.stop(0)
    base = statistics.median(samples["plain"])
    return {name: {"cpu_us_per_call": statistics.median(v), "added_us": statistics.median(v) - base}
            for name, v in samples.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.calls))
    print(json.dumps(result, indent=2))
    (Path(__file__).resolve().parents[1] / "results" / "tracing_hop.json").write_text(json.dumps(result, indent=2) + "\n")
