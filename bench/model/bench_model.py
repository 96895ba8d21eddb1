"""Bare-model benchmark: the loaded SavedModel in-process (no serving, no preprocessing).

    python bench/model/bench_model.py [--model models/hemovision/1] [--calls 300] [--json out.json]

Reports batch-1 latency (p50/p90/p99 ms) through the loaded `serving_default` and `explain`
signatures (compiled graph functions), throughput at batch 32 and 64 (images/s), and, for
comparison, eager Keras `model(x)` batch-1 latency of the same network.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def _lat(fn, x, calls: int, warmup: int = 20) -> dict:
    for _ in range(warmup):
        fn(x)
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        ts.append((time.perf_counter() - t) * 1000)
    ts = np.array(ts)
    return {"p50_ms": float(np.percentile(ts, 50)), "p90_ms": float(np.percentile(ts, 90)),
            "p99_ms": float(np.percentile(ts, 99)), "mean_ms": float(ts.mean()), "calls": calls}


def _throughput(fn, x, seconds: float = 5.0) -> dict:
    for _ in range(3):
        fn(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += 1
    dt = time.perf_counter() - t0
    return {"images_per_s": n * len(x) / dt, "ms_per_batch": dt / n * 1000, "batches": n}


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(root / "models" / "hemovision" / "1"))
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--json")
    a = ap.parse_args()

    import tensorflow as tf

    meta = json.loads((Path(a.model) / "assets.extra" / "hemovision.json").read_text())
    s = meta["input_size"]
    loaded = tf.saved_model.load(a.model)
    serve, explain = loaded.signatures["serving_default"], loaded.signatures["explain"]
    rng = np.random.default_rng(0)
    x = {n: tf.constant(rng.standard_normal((n, s, s, 3)).astype(np.float32)) for n in (1, 32, 64)}

    res = {"model": a.model, "version": meta["version"], "input_size": s,
           "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "tensorflow": tf.__version__,
           "serving_default_batch1": _lat(lambda t: serve(image=t), x[1], a.calls),
           "explain_batch1": _lat(lambda t: explain(image=t), x[1], max(50, a.calls // 3)),
           "serving_default_batch32": _throughput(lambda t: serve(image=t), x[32]),
           "serving_default_batch64": _throughput(lambda t: serve(image=t), x[64])}
    # eager keras for comparison (same weights when the run's final.keras is not at hand: rebuild + copy)
    from hemovision_training.ml.model import build_ensemble, build_model
    rec = meta["training"]["recipe"]
    if "members" in rec:   # an ensemble: the same flat graph (random weights: timing only)
        km = build_ensemble([m["config"] for m in rec["members"]], input_size=s)
    else:
        km = build_model(s, widths=tuple(rec["widths"]), blocks=tuple(rec["blocks"]),
                         stem_width=rec["stem_width"], dropout=rec["dropout"])
    res["eager_keras_batch1"] = _lat(lambda t: km(t, training=False), x[1], max(50, a.calls // 3))
    fn = tf.function(lambda t: km(t, training=False))
    res["keras_tf_function_batch1"] = _lat(fn, x[1], a.calls)

    def p(name, r):
        print(f"{name:32s} p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms")
    print(f"model {a.model} (v{meta['version']}, {s}px) on {os.cpu_count()} CPU cores, TF {tf.__version__}")
    p("serving_default batch 1", res["serving_default_batch1"])
    p("explain (Grad-CAM) batch 1", res["explain_batch1"])
    p("keras tf.function batch 1", res["keras_tf_function_batch1"])
    p("eager keras model(x) batch 1", res["eager_keras_batch1"])
    for b in (32, 64):
        r = res[f"serving_default_batch{b}"]
        print(f"serving_default batch {b:<3d}          {r['images_per_s']:7.0f} images/s  ({r['ms_per_batch']:.1f} ms/batch)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
