"""What always-on tracing (no exporter, the default) costs an upload: the gateway app with its fake
peers on a real in-process gRPC server (so both ends of the hops are instrumented) and real
Redis (the token lookup), uploads through httpx's ASGI transport, tracing off vs on in
interleaved child processes (A/B pairs, same machine, same run).

    python bench/tracing/overhead.py [--pairs 4] [--uploads 300] [--concurrency 1,8]

"off" is the system before tracing was always on: no TracerProvider (the API's no-op tracer, so
FastAPI's own telemetry stays off), no instrumentation, no HTTP tracing middleware. "on" is
`configure_tracing()` with HV_OTEL_EXPORTER unset: a real SDK provider whose sampler records
nothing, FastAPI's request spans, the psycopg2/Redis/Celery instrumentations, the ids-only gRPC
propagation (hemovision_grpc_server: TraceContextChannel, ErrorInterceptor(trace_context=True))
and HttpTracingMiddleware (ids in headers, logs and gRPC metadata). Per gRPC hop alone:
bench/tracing/hop.py.
Writes bench/results/tracing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("HV_BENCH_REDIS", "redis://127.0.0.1:6379/11")


async def _child(mode: str, uploads: int, concurrency: int) -> dict:
    sys.path.insert(0, str(ROOT / "services" / "gateway" / "tests"))
    if mode == "on":
        from hemovision_telemetry import configure_tracing

        configure_tracing("gateway", exporter="none")
    import grpc
    import httpx
    import redis.asyncio as aioredis
    from gateway_fakes import SERVICE_SECRET, World, auth, png_bytes, start_fakes

    from hemovision_grpc_server.interceptors import ErrorInterceptor

    # the fake peers behind the ErrorInterceptor every real server has (it continues the trace when on)
    plain_server = grpc.aio.server

    def server(*args, **kwargs):
        kwargs["interceptors"] = [*(kwargs.get("interceptors") or ()), ErrorInterceptor(trace_context=mode != "off")]
        return plain_server(*args, **kwargs)

    grpc.aio.server = server

    from hemovision_gateway import Settings, create_app
    from hemovision_gateway.clients import Clients
    from hemovision_telemetry import HttpTracingMiddleware

    world = World()
    server, port, _ = await start_fakes(world)
    addr = f"127.0.0.1:{port}"
    settings = Settings(auth_addr=addr, inference_addr=addr, history_addr=addr, reports_addr=addr,
                        training_addr=addr, redis_url=REDIS, upload_dir="/tmp/hv-bench-tracing", batch_inline=True,
                        service_secret=SERVICE_SECRET, rate_limit_requests=10**9, rate_limit_auth_requests=10**9)
    clients = Clients.connect(settings)
    r = aioredis.Redis.from_url(REDIS)
    app = create_app(settings, clients, verifier=world.factory.verifier(redis=r), redis=r)
    if mode == "off":
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HttpTracingMiddleware]
    _, token = world.user("lab_user")
    image = png_bytes()
    headers = auth(token)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:

            async def one() -> float:
                t0 = time.perf_counter()
                resp = await c.post("/api/v1/predictions", headers=headers,
                                    files={"file": ("cell.png", image, "image/png")})
                assert resp.status_code == 201, resp.text
                if mode in ("on", "off"):
                    assert ("x-trace-id" in resp.headers) == (mode == "on")
                return time.perf_counter() - t0

            for _ in range(30):  # warm-up
                await one()
            latencies: list[float] = []
            sem = asyncio.Semaphore(concurrency)

            async def bounded() -> None:
                async with sem:
                    latencies.append(await one())

            t0, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(bounded() for _ in range(uploads)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await clients.close()
    await r.aclose()
    await server.stop(0)
    # CPU time (every thread of the process: the app, the fake peers, gRPC's) per upload is what
    # tracing adds to a machine's load; it is steadier than wall time on a shared machine.
    return {"mode": mode, "concurrency": concurrency, "uploads": uploads, "uploads_per_s": uploads / wall,
            "p50_ms": statistics.median(latencies) * 1000, "cpu_ms_per_upload": cpu * 1000 / uploads}


def summarize(runs: list[dict]) -> dict:
    """Per concurrency: median CPU per upload off / on, the median of the paired differences (a
    pair = the off and on runs next to each other), and wall-clock throughput for reference."""
    summary = {}
    for conc in sorted({r["concurrency"] for r in runs}):
        mine = [r for r in runs if r["concurrency"] == conc]
        pairs = [mine[i:i + 2] for i in range(0, len(mine) - 1, 2)]
        diffs = [next(r for r in p if r["mode"] == "on")["cpu_ms_per_upload"]
                 - next(r for r in p if r["mode"] == "off")["cpu_ms_per_upload"] for p in pairs]
        off = statistics.median(r["cpu_ms_per_upload"] for r in mine if r["mode"] == "off")
        on = statistics.median(r["cpu_ms_per_upload"] for r in mine if r["mode"] == "on")
        summary[f"c{conc}"] = {
            "cpu_ms_per_upload_off": off, "cpu_ms_per_upload_on": on,
            "paired_added_cpu_ms": sorted(diffs), "added_cpu_ms_median": statistics.median(diffs),
            "added_cpu_pct": 100 * statistics.median(diffs) / off,
            "uploads_per_s_off": statistics.median(r["uploads_per_s"] for r in mine if r["mode"] == "off"),
            "uploads_per_s_on": statistics.median(r["uploads_per_s"] for r in mine if r["mode"] == "on"),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "UPLOADS", "CONCURRENCY"))
    args = parser.parse_args()
    if args.child:
        mode, uploads, conc = args.child
        print(json.dumps(asyncio.run(_child(mode, int(uploads), int(conc)))))
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HV_OTEL", "OTEL_"))}
    runs: list[dict] = []
    for conc in [int(c) for c in args.concurrency.split(",")]:
        for pair in range(args.pairs):
            order = ("off", "on") if pair % 2 == 0 else ("on", "off")
            for mode in order:
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(args.uploads), str(conc)],
                                     capture_output=True, text=True, check=True, env=env, cwd=ROOT)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append(run)
                print(json.dumps(run), flush=True)
    summary = summarize(runs)
    print(json.dumps(summary, indent=2))
    results = ROOT / "bench" / "results" / "tracing.json"
    results.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
