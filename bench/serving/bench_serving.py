"""Serving overheads, side by side in one run (make bench-serving).

Legs, each on the same preprocessed PBC test images and the same SavedModel:
  bare      the SavedModel in this process, its compiled `serving_default` concrete function
  bare_explain  the same, its `explain` signature (Grad-CAM): the honest limit of an upload,
            since every answer carries a heatmap (issue 16's targets are ratios to this leg)
  predict   gRPC Predict on the system's embedded model server (batching on)
  classify  InferenceService.Classify (bearer token, input check on) -> model server
  explain   InferenceService.Explain (Grad-CAM) on tensors
  analyze   InferenceService.AnalyzeImages with the JPEG bytes: the short route without the
            gateway and history (preprocess service, explain, heatmap PNG)
  gateway   POST /api/v1/predictions with the image file: the full REST upload (auth, decode + C++
            preprocessing, explain, heatmap PNG, history record in PostgreSQL + blob store), sent by
            http_load.py (keep-alive, pre-encoded requests: the load generator shares the cores)
  gateway_telemetry_off  the same upload on a second, identical system started with tracing and
            metrics off (HV_OTEL_EXPORTER=off HV_METRICS=off; ports + 12000), its rounds interleaved
            with the gateway leg's: what tracing and metrics cost at their defaults (issue 18)
Every leg but the bare ones and gateway_telemetry_off runs on ONE system started as `make up`
starts it (ports + 11000, its own database); the second system idles while the first is measured.
p50/p99 at concurrency 1 (batch 1), throughput at concurrency 32 (batch 1 per request; bare:
one batch of 32), and p99 + peak RSS of the model server while a new version is swapped in
under load vs steady state. Absolute ms and ratios to the bare model are printed and written
to bench/serving/last_run.json.

    python bench/serving/bench_serving.py [--model models/hemovision/1] [--rounds 3]
        [--legs bare,bare_explain,predict,classify,explain,analyze,gateway,gateway_telemetry_off,swap] [--port-offset 11000] [--warmup 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from http_load import upload_call  # noqa: E402  (bench/serving/, beside this file)

REPO = Path(__file__).resolve().parents[2]
TELEMETRY_OFF_LEG = "gateway_telemetry_off"
DATA = REPO.parent / "shared" / "data" / "pbc_128"


def pct(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def latest_model() -> Path:
    base = REPO / "models" / "hemovision"
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
    return base / str(versions[-1])


def test_images(meta: dict, n: int) -> tuple[np.ndarray, list[Path]]:
    """n preprocessed PBC test images (C++ pipeline with the model's spec), and their files."""
    import csv

    rows = [r for r in csv.DictReader(open(DATA / "splits.csv")) if r["split"] == "test"][:n]
    files = [DATA / r["path"] for r in rows]
    try:
        import hemovision_pixels as px

        spec = px.PreprocessSpec.from_dict(meta["preprocessing"])
        arrays = np.stack([px.preprocess(px.decode_image(f.read_bytes()), spec) for f in files])
    except Exception as exc:  # noqa: BLE001 - the bench still runs on noise
        print(f"(hemovision_pixels unavailable: {exc}; using random inputs)")
        s = meta["input_size"]
        arrays = np.random.default_rng(0).normal(0, 1, (n, s, s, 3)).astype(np.float32)
    return arrays.astype(np.float32), files


# ---------------------------------------------------------------------------------------------


class Bare:
    """The SavedModel in this process, called through one compiled signature."""

    def __init__(self, model_dir: Path, images: np.ndarray, signature: str = "serving_default") -> None:
        import tensorflow as tf

        # The fastest pools measured for the bare model on 2 cores (b1 and b32), so the baseline is
        # the best the model does here: 2 threads per op and 2 ops side by side (the ensemble's
        # members run in parallel; inter-op 1 gave 22 % less b32 throughput).
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(2)
        self.tf = tf
        self.fn = tf.saved_model.load(str(model_dir)).signatures[signature]
        self.one = [tf.constant(x[None]) for x in images]
        self.batch = tf.constant(np.concatenate([images] * (32 // len(images) + 1))[:32])
        for x in self.one[:10]:
            self.fn(image=x)
        self.fn(image=self.batch)

    async def call(self, i: int) -> None:
        [v.numpy() for v in self.fn(image=self.one[i % len(self.one)]).values()]

    def batch_throughput(self, seconds: float) -> tuple[int, float]:
        t = time.perf_counter()
        rounds = 0
        while time.perf_counter() - t < seconds:
            [v.numpy() for v in self.fn(image=self.batch).values()]
            rounds += 1
        return rounds * 32, time.perf_counter() - t


async def closed_loop(call, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(i: int):
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                await call(i)
                lat.append((time.perf_counter() - t) * 1000)
            except Exception:  # noqa: BLE001
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    return lat, errors, time.monotonic() - started


async def measure_interleaved(calls: dict, bares: dict[str, Bare], n1: int, seconds32: float, rounds: int,
                              warmup32: float = 0.0, cpu=None) -> dict:
    """Legs measured in alternation (round-robin, `rounds` times) so background load on the shared
    cores hits every leg alike; latencies pooled, throughput = requests / time over all rounds.

    Before the rounds every leg but the bare one runs `warmup32` seconds at concurrency 32, not
    counted: the steady state is measured, not the first minutes of a new system. On ext4 the first
    few thousand blob files of a new history store cost up to 3x the history service's steady CPU
    (kernel inode allocation, `perf`), which made the REST leg's first round ~15 % slower than its
    later ones. The warm-up's own rate is reported beside the result (`warmup_c32`).

    `cpu()` (optional) returns CPU seconds so far per process group; each leg's c32 rounds then
    report core-ms per request per group (`cpu_ms_per_request`): where a request's CPU goes.
    `cpu` may also be a dict leg -> such a function, for legs served by another system."""
    lat1: dict[str, list[float]] = {k: [] for k in calls}
    done32: dict[str, int] = {k: 0 for k in calls}
    time32: dict[str, float] = {k: 0.0 for k in calls}
    lat32: dict[str, list[float]] = {k: [] for k in calls}
    errors: dict[str, int] = {k: 0 for k in calls}
    warm_rate: dict[str, float | None] = {k: None for k in calls}
    warm_errors: dict[str, int] = {k: 0 for k in calls}
    cpu_used: dict[str, dict[str, float]] = {k: {} for k in calls}
    for name, call in calls.items():
        for i in range(10):
            await call(i)
        if warmup32 > 0 and name not in bares:
            lat, warm_errors[name], elapsed = await closed_loop(call, 32, warmup32)
            warm_rate[name] = len(lat) / elapsed
    for _ in range(rounds):
        for name, call in calls.items():
            for i in range(max(1, n1 // rounds)):
                t = time.perf_counter()
                await call(i)
                lat1[name].append((time.perf_counter() - t) * 1000)
        for name, call in calls.items():
            if name in bares:
                count, elapsed = bares[name].batch_throughput(seconds32 / rounds)
            else:
                leg_cpu = cpu.get(name) if isinstance(cpu, dict) else cpu
                before = leg_cpu() if leg_cpu is not None else {}
                lat, err, elapsed = await closed_loop(call, 32, seconds32 / rounds)
                count = len(lat)
                for group, seconds in (leg_cpu() if leg_cpu is not None else {}).items():
                    cpu_used[name][group] = cpu_used[name].get(group, 0.0) + seconds - before.get(group, 0.0)
                lat32[name] += lat
                errors[name] += err
            done32[name] += count
            time32[name] += elapsed
    return {
        name: {
            "p50_ms": pct(lat1[name], 50),
            "p99_ms": pct(lat1[name], 99),
            "throughput_c32": done32[name] / time32[name],
            "c32_p99_ms": pct(lat32[name], 99) if lat32[name] else None,
            "errors": errors[name],
            "warmup_c32": warm_rate[name],
            "warmup_errors": warm_errors[name],
            "cpu_ms_per_request": {g: round(1000 * v / max(1, done32[name]), 3) for g, v in cpu_used[name].items()},
        }
        for name in calls
    }


def predict_call(stub, images):
    from tensorflow_serving.apis import model_pb2, predict_pb2

    from hemovision_tensor_proto import to_tensor_proto

    requests = []
    for x in images:
        r = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="hemovision"))
        r.inputs["image"].CopyFrom(to_tensor_proto(x[None]))
        requests.append(r)
    return lambda i: stub.Predict(requests[i % len(requests)], timeout=30)


def analyze_call(stub, files: list[Path], metadata=None):
    from hemovision.inference.v1 import inference_pb2

    requests = [inference_pb2.AnalyzeImagesRequest(images=[f.read_bytes()], want_heatmap=True, want_model_image=True)
                for f in files]
    return lambda i: stub.AnalyzeImages(requests[i % len(requests)], timeout=30, metadata=metadata)


def classify_call(stub, images, method: str = "Classify", metadata=None):
    from hemovision.common.v1 import common_pb2
    from hemovision.inference.v1 import inference_pb2
    from hemovision_contracts import tensors

    requests = [
        inference_pb2.ClassifyRequest(model=common_pb2.ModelRef(name="hemovision"), images=tensors.to_common_tensor(x[None]))
        for x in images
    ]
    rpc = getattr(stub, method)
    return lambda i: rpc(requests[i % len(requests)], timeout=30, metadata=metadata)


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.samples.append(rss)
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

    def start(self):
        self._thread.start()
        return self

    def reset(self):
        self.peak = 0

    def stop(self):
        self._stop.set()
        self._thread.join()


async def bench_swap(call, model_server_pid: int, activate, status_stub, old: int, new: int) -> dict:
    """Steady window, then activate version `new` in the registry under load (the inference
    service pins it on the model server: load, warm, switch, drain, unload version `old`).
    `call` is the REST upload: the route a user's request takes through the swap."""
    from tensorflow_serving.apis import get_model_status_pb2, model_pb2

    sampler = RssSampler(model_server_pid).start()
    records: list[tuple[float, float]] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def worker(i):
        while not stop.is_set():
            t = time.monotonic()
            try:
                await call(i)
            except Exception as exc:  # noqa: BLE001 - counted: the target is zero
                failures.append(repr(exc)[:200])
                continue
            records.append((t, (time.monotonic() - t) * 1000))

    workers = [asyncio.create_task(worker(i)) for i in range(8)]
    await asyncio.sleep(2)
    steady_from = time.monotonic()
    sampler.reset()
    await asyncio.sleep(10)
    steady_peak = sampler.peak
    swap_from = time.monotonic()
    sampler.reset()
    await activate(new)
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="hemovision"))
    deadline = time.monotonic() + 180
    while True:
        if time.monotonic() > deadline:
            raise SystemExit(f"version {new} did not replace version {old} within 180 s of its activation")
        reply = await status_stub.GetModelStatus(request, timeout=5)
        states = {s.version: s.state for s in reply.model_version_status}
        # the old version is reported END once unloaded (absent if this server never loaded it)
        if states.get(old, get_model_status_pb2.ModelVersionStatus.END) == get_model_status_pb2.ModelVersionStatus.END \
                and states.get(new) == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
            break
        await asyncio.sleep(0.1)
    swap_to = time.monotonic() + 1
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*workers, return_exceptions=True)
    sampler.stop()
    steady = [ms for t, ms in records if steady_from <= t < swap_from]
    swap = [ms for t, ms in records if swap_from <= t < swap_to]
    return {
        "steady_p99_ms": pct(steady, 99),
        "swap_p99_ms": pct(swap, 99),
        "swap_seconds": swap_to - swap_from,
        "steady_peak_rss_mb": steady_peak / 2**20,
        "swap_peak_rss_mb": sampler.peak / 2**20,
        "swap_requests": len(swap),
        "failed_requests": len(failures),
        "failures": failures[:5],
        "from_version": old,
        "to_version": new,
    }


class Stack:
    """The whole system, started as `make up` starts it (`hemovision up --no-workers`), on shifted
    ports, its own database, Redis db and model base holding versions 1 and 2 (copies of the
    model under test) — so every leg below the bare one runs on the one stack a user would run."""

    def __init__(self, model_dir: Path, port_offset: int, redis_url: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        import uuid

        self.offset = port_offset
        self.redis_url = redis_url or os.environ.get("HV_BENCH_REDIS", "redis://127.0.0.1:6379/13")
        self.extra_env = env or {}
        self.work = Path(tempfile.mkdtemp(prefix="hv-bench-"))
        self.base = self.work / "models"
        for version in (1, 2):
            shutil.copytree(model_dir, self.base / "hemovision" / str(version))
        postgres = os.environ.get("HV_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
        self.database_url = f"{postgres}/hv_bench_{uuid.uuid4().hex[:10]}"
        self.log = self.work / "stack.out"
        self.proc: subprocess.Popen | None = None

    def port(self, base: int) -> int:
        return base + self.offset

    def start(self) -> None:
        cmd = [sys.executable, "-m", "hemovision_devstack", "up", "--no-workers",
               "--port-offset", str(self.offset), "--database-url", self.database_url,
               "--redis-url", self.redis_url,
               "--var-dir", str(self.work / "var"), "--model-base", str(self.base)]
        # a short drain so the swap window (activation -> old version unloaded) includes the unload
        # and no per-user rate limit: the bench is one user sending thousands of uploads on purpose
        # Otherwise `make up`'s defaults, logging included (issue 16: the targets hold as a user runs it).
        env = {**os.environ, "HV_INFERENCE_DRAIN_SECONDS": "2", "HV_MODEL_SERVER_DRAIN_SECONDS": "2",
               "HV_GATEWAY_RATE_LIMIT_REQUESTS": "1000000", **self.extra_env}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + 420
        while "HemoVision is up" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"`hemovision up` did not come up:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(1)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of each part of the system: the services by their
        module, PostgreSQL and Redis by process name, and this process (the load generator)."""
        groups: dict[str, float] = {}

        def add(group: str, proc: psutil.Process) -> None:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                return
            groups[group] = groups.get(group, 0.0) + t.user + t.system

        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            module = next((w.removeprefix("hemovision_") for w in cmd.split() if w.startswith("hemovision_")), None)
            if module:
                add(module, child)
        for proc in psutil.process_iter(["name"]):
            name = proc.info["name"] or ""
            if name.startswith("postgres") or name.startswith("redis-server"):
                add("postgres+redis", proc)
        add("load generator", psutil.Process())
        return groups

    def model_server_pid(self) -> int:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if "hemovision_model_server" in " ".join(child.cmdline()):
                return child.pid
        raise SystemExit("model server process not found")

    def lab_token(self) -> str:
        """A new organization's first user (org_admin): uploads go to its private history."""
        import httpx

        email, password = "lab@example.org", "bench password 123"
        r = httpx.post(f"{self.gateway_url}/api/v1/auth/register",
                       json={"email": email, "password": password, "organization": "Bench lab"}, timeout=30)
        r.raise_for_status()
        r = httpx.post(f"{self.gateway_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def admin_token(self) -> str:
        """A platform_admin (created with the CLI, as an operator would): activates versions."""
        import httpx

        email, password = "bench@example.org", "bench password 123"
        done = subprocess.run([sys.executable, "-m", "hemovision_auth", "create-admin", "--email", email,
                               "--password-stdin"], input=password, text=True, capture_output=True, cwd=REPO,
                              env={**os.environ, "HV_DATABASE_URL": self.database_url, "HV_ENV": "development"},
                              timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"create-admin failed: {done.stderr}")
        r = httpx.post(f"{self.gateway_url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port(8000)}"

    def stop(self) -> None:
        import signal

        from hemovision_database import drop_database

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            drop_database(self.database_url)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


async def main_async(args) -> dict:
    model_dir = Path(args.model) if args.model else latest_model()
    meta = json.loads((model_dir / "assets.extra" / "hemovision.json").read_text())
    images, files = test_images(meta, 64)
    print(f"model {model_dir} (input {meta['input_size']} px), {len(images)} PBC test images, {os.cpu_count()} cores")

    legs = set(args.legs.split(","))
    results: dict = {"model": str(model_dir), "rounds": args.rounds}
    bares = {name: Bare(model_dir, images, signature) for name, signature in
             (("bare", "serving_default"), ("bare_explain", "explain")) if name in legs}

    stack = Stack(model_dir, args.port_offset)
    # issue 18: what tracing + metrics cost at their defaults, measured against the same system
    # with both switched off, interleaved round by round with the `gateway` leg
    quiet = Stack(model_dir, args.port_offset + 1000, redis_url=os.environ.get(
        "HV_BENCH_QUIET_REDIS", "redis://127.0.0.1:6379/14"), env={"HV_OTEL_EXPORTER": "off", "HV_METRICS": "off"}) \
        if TELEMETRY_OFF_LEG in legs else None
    try:
        print("starting the system (hemovision up) ...")
        stack.start()
        token, admin = stack.lab_token(), stack.admin_token()
        if quiet is not None:
            print("starting a second system with tracing and metrics off (HV_OTEL_EXPORTER=off HV_METRICS=off) ...")
            quiet.start()
            quiet_token = quiet.lab_token()
        auth = (("authorization", f"Bearer {token}"),)
        import httpx

        from hemovision.inference.v1 import inference_pb2_grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.port(8500)}") as ms, grpc.aio.insecure_channel(
            f"127.0.0.1:{stack.port(50053)}"
        ) as inf, httpx.AsyncClient(base_url=stack.gateway_url, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"}) as http:
            inference = inference_pb2_grpc.InferenceServiceStub(inf)
            classify = classify_call(inference, images, metadata=auth)
            candidates = {
                **{name: b.call for name, b in bares.items()},
                "predict": predict_call(prediction_service_pb2_grpc.PredictionServiceStub(ms), images),
                "classify": classify,
                "explain": classify_call(inference, images, "Explain", metadata=auth),
                "analyze": analyze_call(inference, files, metadata=auth),
                "gateway": upload_call(stack.gateway_url, token, files),
                TELEMETRY_OFF_LEG: upload_call(quiet.gateway_url, quiet_token, files) if quiet else None,
            }
            calls = {k: v for k, v in candidates.items() if k in legs and v is not None}
            if calls:
                measured = await measure_interleaved(calls, bares, args.n1, args.seconds, args.rounds, args.warmup,
                                                     cpu={name: quiet.cpu_seconds if name == TELEMETRY_OFF_LEG
                                                          else stack.cpu_seconds for name in calls})
                for name, values in measured.items():
                    results[name] = values
                    print(f"{name:9}", values)
            if "swap" in legs:
                listed = (await http.get("/api/v1/models")).json()["items"]
                active = next(m["version"] for m in listed if m["status"] == "active")
                target = 1 if active == 2 else 2   # the registry seeds the newest version as active

                async def activate(version: int) -> None:
                    r = await http.post(f"/api/v1/models/{version}/activate", json={"reason": "bench swap"},
                                        headers={"Authorization": f"Bearer {admin}"})
                    r.raise_for_status()

                results["swap"] = await bench_swap(upload_call(stack.gateway_url, token, files),
                                                   stack.model_server_pid(), activate,
                                                   model_service_pb2_grpc.ModelServiceStub(ms), active, target)
                print("swap     ", results["swap"])
    finally:
        stack.stop()
        if quiet is not None:
            quiet.stop()
    return results


def report(r: dict) -> str:
    bare, limit = r["bare"], r["bare_explain"]
    lines = [
        f"{'leg':21} {'p50 c1 ms':>10} {'p99 c1 ms':>10} {'img/s c32':>10} {'p50/bare_expl':>14} {'tput/bare_expl':>15}",
    ]
    for leg in ("bare", "bare_explain", "predict", "classify", "explain", "analyze", "gateway", TELEMETRY_OFF_LEG):
        if leg not in r:
            continue
        x = r[leg]
        lines.append(
            f"{leg:21} {x['p50_ms']:10.2f} {x['p99_ms']:10.2f} {x['throughput_c32']:10.1f} "
            f"{x['p50_ms'] / limit['p50_ms']:13.2f}x {x['throughput_c32'] / limit['throughput_c32']:14.0%}"
        )
    if "gateway" in r:
        g = r["gateway"]
        lines.append(
            f"REST upload: c32 {g['throughput_c32'] / limit['throughput_c32']:.0%} of bare explain batch-32 "
            f"(target >= 60 %, goal 75 %; {g['throughput_c32'] / bare['throughput_c32']:.0%} of bare serving_default); "
            f"c1 p50 {g['p50_ms'] / limit['p50_ms']:.2f}x bare explain b1 p50 (target <= 2x), "
            f"p99 {g['p99_ms'] / limit['p50_ms']:.2f}x (target <= 4x); errors c32 {g['errors']}"
            + (f"; warm-up c32 (not counted) {g['warmup_c32']:.1f} uploads/s, {g.get('warmup_errors', 0)} errors"
               if g.get("warmup_c32") else ""))
    if "gateway" in r and TELEMETRY_OFF_LEG in r:
        on, off = r["gateway"], r[TELEMETRY_OFF_LEG]
        on_ms, off_ms = (sum(x.get("cpu_ms_per_request", {}).values()) for x in (on, off))
        lines.append(
            f"tracing + metrics at their defaults vs both off (a second system, interleaved): REST c32 "
            f"{on['throughput_c32']:.1f} vs {off['throughput_c32']:.1f} uploads/s = "
            f"{1 - on['throughput_c32'] / off['throughput_c32']:+.1%} cost (target <= 3 %); c1 p50 "
            f"{on['p50_ms']:.2f} vs {off['p50_ms']:.2f} ms; core-ms per upload {on_ms:.2f} vs {off_ms:.2f} "
            f"({on_ms - off_ms:+.2f})")
    for leg in ("analyze", "gateway", TELEMETRY_OFF_LEG):
        split = r.get(leg, {}).get("cpu_ms_per_request")
        if split:
            parts = ", ".join(f"{g} {v:.2f}" for g, v in sorted(split.items(), key=lambda kv: -kv[1]))
            lines.append(f"core-ms per request at c32, {leg}: {parts} (total {sum(split.values()):.2f})")
    s = r["swap"]
    lines.append(
        f"swap (REST uploads, 8 clients, {s['failed_requests']} failed): p99 steady {s['steady_p99_ms']:.1f} ms, during swap {s['swap_p99_ms']:.1f} ms "
        f"({s['swap_p99_ms'] / s['steady_p99_ms']:.2f}x, target <= 1.5x) over {s['swap_seconds']:.1f} s / {s['swap_requests']} requests; "
        f"model server peak RSS steady {s['steady_peak_rss_mb']:.0f} MiB, during swap {s['swap_peak_rss_mb']:.0f} MiB "
        f"({s['swap_peak_rss_mb'] / s['steady_peak_rss_mb']:.2f}x, target <= 2x)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="SavedModel version dir (default: models/hemovision/<highest>)")
    parser.add_argument("--n1", type=int, default=300, help="requests at concurrency 1")
    parser.add_argument("--seconds", type=float, default=12.0, help="total duration at concurrency 32, per leg")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the legs")
    parser.add_argument("--warmup", type=float, default=20.0,
                        help="seconds at concurrency 32 per leg before measuring (not counted; 0 = none)")
    parser.add_argument("--legs", default="bare,bare_explain,predict,classify,explain,analyze,gateway,"
                                          f"{TELEMETRY_OFF_LEG},swap",
                        help="comma-separated legs to run")
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("HV_BENCH_PORT_OFFSET", "11000")),
                        help="the bench's system listens on the default ports + this (default: 19000, "
                             "61051-61056, 19500-19501, all outside Linux's ephemeral port range, so "
                             "no client connection in TIME-WAIT can hold one)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if not {"bare", "bare_explain", "swap"} <= set(results):
        print(json.dumps(results, indent=2))
        return
    text = report(results)
    print()
    print(text)
    out = Path(__file__).with_name("last_run.json")
    out.write_text(json.dumps({**results, "table": text.splitlines()}, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
