"""Load and faults, for real (make bench-reliability; issue 20 item 6, docs/reliability.md).

One run starts the whole system as `make up` starts it (the devstack's plan and defaults, Celery
workers included; the per-user rate limit raised: the bench is one user sending on purpose) on
ports + 14000, on a PostgreSQL cluster and a redis-server of its own (never the shared ones), and:

  load      REST uploads at c=32 then c=200 (closed loop): every request answered within its
            deadline with 201, 429 or 503 (hung requests and other 5xx counted), p50/p99,
            goodput (201/s) at c=200 vs c=32
  model     kill -9 of the model server under load (c=32): time to the first 503 and its
            Retry-After, error-answer latency, hung requests, time until 201s again
  postgres  `pg_ctl restart -m immediate` (a crash) of the run's cluster under load: what clients
            see, and every 201 still in history afterwards
  redis     the run's redis-server killed (-9) under load for `--redis-down-s`: revocation fails
            closed (503, a revoked token is never let in), then recovery once it is back
  inputs    every hostile file of hemovision_testkit.hostile through REST (bench/reliability/inputs.py):
            each answered as documented, within seconds, nothing of a rejected file stored
  soak      (--soak) c=32 for `--soak-s` sampling every process's RSS: slope per process
Afterwards every 201 answer's id is looked up in history (by the unique sample_id each upload
carries): none lost, none recorded twice.

`make up` restarts a process that exits (the devstack's supervisor, restart with backoff): the
bench kills and watches; with an older devstack without supervision it restarts the process
itself after 1 s with the devstack's own argv and environment, and the report says which.

    python bench/reliability/bench_reliability.py [--quick] [--soak] [--port-offset 14000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from harness import (  # noqa: E402
    DEFAULT_OFFSET, REPO, Answer, OwnPostgres, OwnRedis, System, Uploader, history_rows, reconcile, upload_files,
)
from inputs import run_inputs  # noqa: E402

RESULTS = REPO / "bench" / "results" / "reliability.json"
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- bench-reliability:begin -->", "<!-- bench-reliability:end -->"


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summary(answers: list[Answer], seconds: float) -> dict:
    kinds: dict[str, int] = {}
    for a in answers:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    ok = [a.ms for a in answers if a.kind == "201"]
    errs = [a.ms for a in answers if a.kind in ("429", "503")]
    return {
        "requests": len(answers), "seconds": round(seconds, 1), "by_kind": kinds,
        "goodput_per_s": round(kinds.get("201", 0) / seconds, 2),
        "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "max_ms": round(max((a.ms for a in answers), default=0), 1),
        "error_answer_p99_ms": pct(errs, 99),
        "hung": kinds.get("timeout", 0), "transport_errors": kinds.get("transport", 0),
        "other_5xx": kinds.get("5xx", 0), "other_4xx": kinds.get("4xx", 0),
        "without_retry_after": sum(1 for a in answers if a.kind in ("429", "503") and not a.retry_after),
        "details": sorted({a.detail for a in answers if a.kind not in ("201",) and a.detail})[:8],
    }


async def fault_run(name: str, up: Uploader, system: System, concurrency: int, before_s: float, inject,
                    after_s: float, recover=None) -> dict:
    """Load at `concurrency`; after `before_s` call `inject()` (the fault), then `recover()` (if any,
    e.g. bring Redis back) and keep the load on until 201s flow again plus `after_s`."""
    start_n = len(up.answers)
    t0 = time.monotonic()
    stop = asyncio.Event()
    load = asyncio.create_task(up.run(concurrency, 10_000, name, stop_event=stop))
    await asyncio.sleep(before_s)
    t_fault = time.monotonic()
    info = await inject() or {}
    t_recover = time.monotonic()
    if recover is not None:
        info.update(await recover() or {})
        t_recover = time.monotonic()
    # until the first 201 sent after the fault, at most 300 s
    deadline = time.monotonic() + 300
    first_ok = None
    while time.monotonic() < deadline:
        first_ok = next((a for a in up.answers[start_n:] if a.kind == "201" and a.start > t_fault), None)
        if first_ok:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(after_s)
    stop.set()
    await load
    answers = up.answers[start_n:]
    during = [a for a in answers if a.start >= t_fault and (first_ok is None or a.start < first_ok.start)]
    def done(a: Answer) -> float:
        return a.start + a.ms / 1000

    first_err = min((a for a in answers if done(a) >= t_fault and a.kind in ("503", "429", "4xx", "5xx", "transport")),
                    key=done, default=None)
    s = summary(answers, time.monotonic() - t0)
    s.update(info)
    s.update({
        "fault_window_s": round(((first_ok.start + first_ok.ms / 1000) if first_ok else time.monotonic()) - t_fault, 1),
        "recovered": first_ok is not None,
        "recovery_after_restore_s": round((first_ok.start + first_ok.ms / 1000) - t_recover, 1) if first_ok else None,
        "first_error_after_fault_s": round(done(first_err) - t_fault, 2) if first_err else None,
        "first_error": f"{first_err.status or first_err.kind} retry-after={first_err.retry_after}" if first_err else None,
        "during_fault": summary(during, max(0.1, (first_ok.start if first_ok else time.monotonic()) - t_fault)),
    })
    return s


def rss_by_process(system: System, pg: OwnPostgres, redis: OwnRedis) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in system.pids().items():
        try:
            p = psutil.Process(pid)
            out[name] = sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**20
        except psutil.Error:
            pass
    for label, pid in (("redis", redis.proc.pid if redis.proc else None),):
        if pid:
            try:
                out[label] = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                pass
    try:  # the postmaster's pid is the first line of postmaster.pid (its cmdline is rewritten)
        postmaster = psutil.Process(int((pg.data / "postmaster.pid").read_text().split()[0]))
        # Private memory (USS), not RSS: every backend's RSS counts each page of shared_buffers it
        # has touched, so the sum grows as the buffer cache fills (bounded by shared_buffers) with
        # nothing leaking; a backend's own memory (caches, work_mem) is its USS
        out["postgres (USS)"] = sum(c.memory_full_info().uss for c in [postmaster, *postmaster.children()]) / 2**20
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return out


async def soak(up: Uploader, system: System, pg: OwnPostgres, redis: OwnRedis, seconds: float) -> dict:
    samples: list[tuple[float, dict[str, float]]] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    start_n = len(up.answers)
    load = asyncio.create_task(up.run(32, seconds, "soak"))
    while not load.done():
        samples.append((time.monotonic() - t0, rss_by_process(system, pg, redis)))
        await asyncio.sleep(10)
    stop.set()
    await load
    procs = sorted({k for _, s in samples for k in s})
    trend = {}
    for name in procs:
        pts = [(t, s[name]) for t, s in samples if name in s]
        if len(pts) < 3:
            continue
        ts, vs = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        half = len(pts) // 2
        slope = float(np.polyfit(ts, vs, 1)[0]) * 60  # MiB per minute
        trend[name] = {"start_mib": round(vs[0], 1), "end_mib": round(vs[-1], 1),
                       "slope_mib_per_min": round(slope, 2),
                       "second_half_slope_mib_per_min": round(float(np.polyfit(ts[half:], vs[half:], 1)[0]) * 60, 2)}
    return {**summary(up.answers[start_n:], time.monotonic() - t0), "rss": trend, "samples": len(samples)}


async def main_async(args) -> dict:
    q = args.quick
    offset = args.port_offset
    pg, redis = OwnPostgres(5432 + offset), OwnRedis(6379 + offset)
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB, shared with other work",
        "quick": q, "port_offset": offset,
    }
    system = None
    watcher = None
    signed_in = None
    try:
        print(f"own PostgreSQL on {pg.port}, own Redis on {redis.port} ...", flush=True)
        pg.start()
        redis.start()
        system = System(database_url=f"{pg.url}/hemovision", redis_url=redis.url, offset=offset,
                        extra_env={"HV_GATEWAY_RATE_LIMIT_REQUESTS": "1000000"})
        print("starting the system (devstack plan, as `make up`) ...", flush=True)
        t = time.monotonic()
        await asyncio.to_thread(system.start)
        results["startup_s"] = round(time.monotonic() - t, 1)
        print(f"up in {results['startup_s']} s", flush=True)
        watcher = asyncio.create_task(system.watch())
        login = await asyncio.to_thread(system.register)
        up = Uploader(system.gateway_url, login["access_token"], upload_files(64), deadline_s=args.deadline)

        async def keep_signed_in() -> None:
            """A new access token every 10 minutes, as a client does (they live 15): a long run
            (the soak) would otherwise measure 401s."""
            while True:
                await asyncio.sleep(600)
                while True:
                    try:
                        up.token = (await asyncio.to_thread(system.login))["access_token"]
                        break
                    except Exception as exc:  # noqa: BLE001 - a fault leg may have Redis or PostgreSQL down
                        print(f"sign-in again failed ({exc}); retrying in 5 s", flush=True)
                        await asyncio.sleep(5)

        signed_in = asyncio.create_task(keep_signed_in())

        legs = set(args.legs.split(","))
        if "inputs" in legs:
            print("hostile inputs (hemovision_testkit.hostile) ...", flush=True)
            results["inputs"] = await asyncio.to_thread(run_inputs, system.gateway_url, system.cfg.var_dir)
            print(json.dumps(results["inputs"]), flush=True)
        if "load" in legs:
            warm = 5 if q else 20
            print(f"warm-up c=32 {warm} s", flush=True)
            await up.run(32, warm, "warmup")
            secs = 10 if q else args.load_s
            # interleaved rounds (c=32, c=200, c=32, ...): background load on the shared cores hits
            # both alike; answers pooled, goodput = 201s / time over all rounds of that concurrency
            rounds = 1 if q else args.rounds
            pooled: dict[int, list[Answer]] = {32: [], 200: []}
            spent = {32: 0.0, 200: 0.0}
            for _ in range(rounds):
                for c in (32, 200):
                    t = time.monotonic()
                    pooled[c] += await up.run(c, secs / rounds, f"load{c}")
                    spent[c] += time.monotonic() - t
            load = {"rounds": rounds}
            for c in (32, 200):
                load[f"c{c}"] = summary(pooled[c], spent[c])
                print(f"c={c}:", json.dumps({k: v for k, v in load[f'c{c}'].items() if k != 'details'}), flush=True)
            load["goodput_ratio_c200_c32"] = round(load["c200"]["goodput_per_s"] / max(load["c32"]["goodput_per_s"],
                                                                                      1e-9), 3)
            results["load"] = load

        if "model" in legs:
            async def kill_model() -> dict:
                pid = system.kill("model-server")
                return {"killed_pid": pid, "restarted_by": system.restarted_by}

            print("kill -9 model server under load ...", flush=True)
            results["model_kill"] = await fault_run("model", up, system, 32, 5 if q else 10, kill_model,
                                                    5 if q else 15)
            print(json.dumps({k: v for k, v in results["model_kill"].items() if k != "during_fault"}), flush=True)

        if "postgres" in legs:
            async def restart_pg() -> dict:
                t = time.monotonic()
                await asyncio.to_thread(pg.restart, "immediate")
                return {"pg_restart_s": round(time.monotonic() - t, 1)}

            print("PostgreSQL restart (immediate) under load ...", flush=True)
            results["postgres_restart"] = await fault_run("pg", up, system, 32, 5 if q else 10, restart_pg,
                                                          5 if q else 15)
            print(json.dumps({k: v for k, v in results["postgres_restart"].items() if k != "during_fault"}), flush=True)

        if "redis" in legs:
            import httpx

            # a second session of the same user, logged out before the outage: its token is revoked
            revoked = (await asyncio.to_thread(system.login))["access_token"]
            async with httpx.AsyncClient(base_url=system.gateway_url, timeout=30) as http:
                r = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {revoked}"})
                assert r.status_code == 204, r.text
                await asyncio.sleep(1.5)  # AOF everysec: the revocation is on disk

                async def probe(label: str) -> dict:
                    r1 = await http.get("/api/v1/predictions?limit=1", headers={"Authorization": f"Bearer {revoked}"})
                    r2 = await http.get("/api/v1/predictions?limit=1",
                                        headers={"Authorization": f"Bearer {up.token}"})
                    return {f"{label}_revoked_token": r1.status_code, f"{label}_valid_token": r2.status_code,
                            f"{label}_message": r1.json().get("error", {}).get("message") if r1.status_code >= 400 else ""}

                info: dict = await probe("before")
                down_s = 5 if q else args.redis_down_s

                async def kill_redis() -> dict:
                    redis.kill()
                    await asyncio.sleep(1.0)
                    info.update(await probe("during"))
                    return {}

                async def bring_back() -> dict:
                    await asyncio.sleep(down_s - 1.0)
                    await asyncio.to_thread(redis.start)
                    return {"redis_down_s": down_s}

                print(f"Redis down {down_s} s under load ...", flush=True)
                res = await fault_run("redis", up, system, 32, 5 if q else 10, kill_redis, 5 if q else 10,
                                      recover=bring_back)
                info.update(await probe("after"))
                res.update(info)
                results["redis_down"] = res
                print(json.dumps({k: v for k, v in res.items() if k != "during_fault"}), flush=True)

        if args.soak:
            print(f"soak c=32 for {args.soak_s} s ...", flush=True)
            results["soak"] = await soak(up, system, pg, redis, args.soak_s)

        await asyncio.sleep(2)
        rows = await asyncio.to_thread(history_rows, system.cfg.database_url)
        counted = [a for a in up.answers]
        results["history"] = reconcile(counted, rows)
        results["events"] = [f"{e.t - system.events[0].t:7.1f} s  {e.what}" for e in system.events] if system.events else []
        results["supervisor"] = system.supervisor_lines()
        results["stack_mode"] = system.mode
        print(json.dumps(results["history"]), flush=True)
    finally:
        if signed_in is not None:
            signed_in.cancel()
        if watcher is not None:
            system.stop_watching()
            await asyncio.gather(watcher, return_exceptions=True)
        if system is not None:
            logs = Path(args.keep_logs) if args.keep_logs else None
            system.stop(keep_logs=logs)
            if logs:
                print(f"stack logs kept in {logs}")
        redis.stop()
        pg.stop()
    return results


GROWTH_MIB_PER_MIN = 1.0  # the soak's verdict: a second-half slope above this is growth


def soak_verdict(t: dict) -> str:
    slope = t["second_half_slope_mib_per_min"]
    return "**grows**" if slope > GROWTH_MIB_PER_MIN else "no growth"


def table(r: dict) -> str:
    lines = [f"Run {r['date']} on {r['machine']}{' (--quick)' if r['quick'] else ''}; stack up in "
             f"{r.get('startup_s')} s.", ""]
    if "load" in r:
        L = r["load"]
        lines += ["| load (REST upload, closed loop) | requests | 201 | 429 | 503 | other 5xx | hung (> deadline) | transport errors "
                  "| p50 ms | p99 ms | max ms | goodput 201/s |", "|---|" + "---|" * 11]
        for c in ("c32", "c200"):
            x = L[c]
            k = x["by_kind"]
            lines.append(f"| {c} for {x['seconds']} s | {x['requests']} | {k.get('201', 0)} | {k.get('429', 0)} | "
                         f"{k.get('503', 0)} | {x['other_5xx']} | {x['hung']} | {x['transport_errors']} | "
                         f"{x['p50_ms']} | {x['p99_ms']} | {x['max_ms']} | {x['goodput_per_s']} |")
        lines += ["", f"Goodput at c=200 = **{L['goodput_ratio_c200_c32']:.0%}** of c=32 (target >= 80 %; "
                  f"{L.get('rounds', 1)} interleaved rounds each).", ""]
    if "inputs" in r:
        x = r["inputs"]
        lines += ["| hostile inputs (REST, one organization) | cases | answered as documented | 5xx | slowest answer "
                  "| predictions stored from rejected files | stray files stored |", "|---|" + "---|" * 6,
                  f"| {x['images_rejected']} rejected + {x['images_accepted']} tricky-but-real images, {x['archives']} "
                  f"hostile archives, 1 ZIP of every rejected image ({x['items_failed']}/{x['zip_of_rejected_items']} "
                  f"items failed) | {x['cases']} | {x['answered_as_documented']} | {x['server_errors']} | "
                  f"{x['slowest_s']} s (limit {x['slow_limit_s']:.0f} s) | {x['stored_predictions_of_rejected']} | "
                  f"{x['stray_files']} |", ""]
        if x["wrong"]:
            lines += ["Not as documented: " + "; ".join(x["wrong"]), ""]
    faults = [("model_kill", "model server kill -9"), ("postgres_restart", "PostgreSQL restart (immediate)"),
              ("redis_down", "Redis down")]
    if any(k in r for k, _ in faults):
        lines += ["| fault (load c=32) | first error after | first error | error answers p99 ms | hung | other 5xx "
                  "| transport errors | 503/429 without Retry-After | 201s again after fault | after restore |",
                  "|---|" + "---|" * 9]
        for key, label in faults:
            if key not in r:
                continue
            x = r[key]
            d = x["during_fault"]
            if x["first_error"] is None:  # every answer during the fault was a 201
                first = "none | every answer 201 | —"
            else:
                first = f"{x['first_error_after_fault_s']} s | {x['first_error']} | {x['error_answer_p99_ms']}"
            lines.append(f"| {label} | {first} | {x['hung']} | {x['other_5xx']} | {x['transport_errors']} | "
                         f"{x['without_retry_after']} | {x['fault_window_s']} s | {x['recovery_after_restore_s']} s |")
            if d.get("details"):
                lines.append(f"|  answers seen | {'; '.join(d['details'])[:300]} |" + " |" * 8)
        lines.append("")
    if "redis_down" in r:
        x = r["redis_down"]
        lines.append(f"Revoked token: before the outage {x.get('before_revoked_token')}, during {x.get('during_revoked_token')} "
                     f"(\"{x.get('during_message')}\"), after {x.get('after_revoked_token')}; valid token: before "
                     f"{x.get('before_valid_token')}, during {x.get('during_valid_token')}, after {x.get('after_valid_token')}.")
        lines.append("")
    if "soak" in r:
        s = r["soak"]
        lines += [f"Soak c=32 for {s['seconds']} s: {s['by_kind']}, p99 {s['p99_ms']} ms.", "",
                  "| process | RSS start MiB | end MiB | slope MiB/min | second half MiB/min | verdict |",
                  "|---|---|---|---|---|---|"]
        for name, t in s["rss"].items():
            lines.append(f"| {name} | {t['start_mib']} | {t['end_mib']} | {t['slope_mib_per_min']} | "
                         f"{t['second_half_slope_mib_per_min']} | {soak_verdict(t)} |")
        lines += ["", f"Verdict: a process **grows** when its second-half slope is above {GROWTH_MIB_PER_MIN} MiB/min "
                  "(at ~80 uploads/s that is ~200 bytes kept per upload); below that, sampling every 10 s "
                  "cannot tell a trend from the allocator's ups and downs."]
        lines.append("")
    h = r.get("history")
    if h:
        lines.append(f"History after all runs: {h['answered_201']} answers 201, {h['rows']} rows; lost {h['lost']}, "
                     f"recorded twice {h['recorded_twice']}, recorded without a 201 answer {h['recorded_without_201']}.")
    if r.get("events"):
        lines += ["", f"Stack mode: {r.get('stack_mode')}. Process events (bench clock): "
                  + "; ".join(" ".join(e.split()) for e in r["events"])]
    if r.get("supervisor"):
        lines += ["", "The devstack said: " + "; ".join(x.replace("[hemovision] ", "") for x in r["supervisor"][:12])]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short durations, for developing")
    p.add_argument("--legs", default="inputs,load,model,postgres,redis")
    p.add_argument("--load-s", type=float, default=60.0, help="seconds at c=32 and at c=200 (each, in all)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved c=32 / c=200 rounds the seconds are split into")
    p.add_argument("--deadline", type=float, default=30.0, help="client deadline per request, s")
    p.add_argument("--redis-down-s", type=float, default=15.0)
    p.add_argument("--soak", action="store_true", help="also soak at c=32, sampling RSS")
    p.add_argument("--soak-s", type=float, default=600.0)
    p.add_argument("--port-offset", type=int, default=DEFAULT_OFFSET)
    p.add_argument("--keep-logs", help="copy the stack's logs into this folder before it is removed")
    p.add_argument("--no-write", action="store_true", help="do not write docs/reliability.md and the JSON")
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    text = table(results)
    print("\n" + text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**results, "table": text.splitlines()}, indent=2))
        write_doc(text)
        print(f"\nwritten {RESULTS} and {DOC}")


if __name__ == "__main__":
    main()
