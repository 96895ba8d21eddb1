"""Adaptation benchmark (make bench-adapt): how far fine-tuning on a lab's reviewed cells takes a model.

    python bench/adapt/bench_adapt.py [--model models/hemovision/1] [--cells 20 50 80] [--seeds 3]
                                      [--json bench/results/adapt.json]
    python bench/adapt/bench_adapt.py --tune [--json bench/results/adapt_tune.json]

Bench: for each N of --cells and each seed, N cells of ../shared/data/external_dev (another lab)
are drawn stratified as the lab's "reviewed" cells (seed = fold); the product's adaptation runs on
them exactly as the training service runs it (hemovision_training.ml.adapt.adapt: hold-back, fine-
tune with PBC replay, calibration, gate), and the accuracy on the other 100 - N cells is
measured before (the base) and after. Also: wall time of one adaptation on this machine, the gate's
decision, and the adapted version's PBC test accuracy (all 3,420 test images).

Tune (--tune): the recipe's hyperparameters are chosen here, on *simulated* labs — PBC val white
cells under the shift benchmark's shifts (bench/shift/shifts.py) — never on external_dev.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "bench" / "shift"))

WHITE_CELLS = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def model_images(images: list[np.ndarray], spec_dict: dict) -> np.ndarray:
    """What history stores for each cell: the uint8 model image under the version's spec."""
    import hemovision_pixels as px

    spec = px.PreprocessSpec.from_dict(spec_dict)
    return np.stack([px.model_image(t, spec) for t in px.preprocess_batch(images, spec)])


def stratified_draw(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n indices, stratified by class (largest remainders), seeded."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take))[: n - take.sum()]:
        take[i] += 1
    out = []
    for c, k in zip(classes, take):
        out += rng.permutation(np.flatnonzero(labels == c))[:k].tolist()
    return np.array(sorted(out))


def external_lab(class_names: list[str], spec: dict) -> tuple[np.ndarray, np.ndarray]:
    import hemovision_pixels as px

    rows = list(csv.DictReader(open(DATA / "external_dev" / "labels.csv")))
    images = [px.decode_image((DATA / "external_dev" / r["path"]).read_bytes()) for r in rows]
    return model_images(images, spec), np.array([class_names.index(r["label"]) for r in rows], np.int32)


def simulated_labs(class_names: list[str], spec: dict, per_lab: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """PBC val white cells under three shift combinations, each a 'lab'."""
    import hemovision_pixels as px
    from shifts import SHIFTS, rng_for

    rows = [r for r in csv.DictReader(open(DATA / "pbc_128" / "splits.csv"))
            if r["split"] == "val" and r["label"] in WHITE_CELLS]
    labels = np.array([class_names.index(r["label"]) for r in rows], np.int32)
    keep = stratified_draw(labels, per_lab, 7)
    images = [px.decode_image((DATA / "pbc_128" / rows[i]["path"]).read_bytes()) for i in keep]
    combos = {
        "lab-like (zoom 1.8x, warm, H+25%, 300 px, JPEG 70)": [SHIFTS["combined"]["lab-like"]],
        "zoom 2.0x + H+30% E-20%": [SHIFTS["zoom"]["2.0x"], SHIFTS["stain_hed"]["H+30% E-20%"]],
        "hue-0.04 sat x1.3 + cool + defocus 1.5px": [SHIFTS["stain_hsv"]["hue-0.04 sat x1.3"],
                                                     SHIFTS["white_balance"]["cool"],
                                                     SHIFTS["defocus"]["disk 1.5px"]],
    }
    labs = {}
    for name, fns in combos.items():
        shifted = []
        for i, img in enumerate(images):
            for fn in fns:
                img = fn(img, rng_for(name, i))
            shifted.append(img)
        labs[name] = (model_images(shifted, spec), labels[keep])
    return labs


def accuracy(model, x_u8: np.ndarray, y: np.ndarray, spec: dict) -> float:
    from hemovision_training.ml.adapt import normalise, predict_logits

    return float((predict_logits(model, normalise(x_u8, spec)).argmax(1) == y).mean())


def run_one(base: Path, lab: tuple[np.ndarray, np.ndarray], n: int, seed: int, cfg, replay, pbc_val,
            test=None) -> dict:
    from hemovision_training.ml.adapt import adapt, load_version

    x, y = lab
    reviewed = stratified_draw(y, n, seed)
    rest = np.setdiff1d(np.arange(len(y)), reviewed)
    base_model, meta = load_version(base)
    spec = meta["preprocessing"]
    before = accuracy(base_model, x[rest], y[rest], spec)
    t0 = time.monotonic()
    res = adapt(base, x[reviewed], y[reviewed], data_dir=DATA / "pbc_128", cfg=dataclasses.replace(cfg, seed=seed),
                replay=replay, pbc_val=pbc_val)
    seconds = time.monotonic() - t0
    row = {"cells": n, "seed": seed, "rest": int(len(rest)), "accuracy_before": before,
           "accuracy_after": accuracy(res.model, x[rest], y[rest], spec), "seconds": round(seconds, 1),
           "gate_accepted": res.gate["accepted"], "gate": res.gate,
           "mix": res.training_info["fine_tune"]["mix"]["mix"]}
    if test is not None:
        row["pbc_test_before"] = accuracy(base_model, *test, spec)
        row["pbc_test_after"] = accuracy(res.model, *test, spec)
    g = res.gate
    print(json.dumps({k: v for k, v in row.items() if k != "gate"} | {
        "cfg": {k: v for k, v in dataclasses.asdict(cfg).items() if v != getattr(type(cfg)(), k)}, "holdout": [g["holdout_accuracy_before"], g["holdout_accuracy_after"]],
        "pbc_val": [round(g["pbc_val_accuracy_before"], 4), round(g["pbc_val_accuracy_after"], 4)],
        "reasons": g["reasons"]}), flush=True)
    return row


def main() -> None:
    from hemovision_training.ml.adapt import AdaptConfig, load_version, pbc_model_images
    from hemovision_training.ml.data import CLASS_NAMES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "hemovision" / "1"))
    ap.add_argument("--cells", type=int, nargs="+", default=[20, 50, 80])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--grid", help="JSON list of AdaptConfig overrides to tune over")
    ap.add_argument("--labs", type=int, nargs="*", help="indices of the simulated labs to tune on (default all)")
    ap.add_argument("--json")
    ap.add_argument("--markdown", help="also write the table here")
    a = ap.parse_args()
    base = Path(a.model)
    names = list(CLASS_NAMES)
    _, meta = load_version(base)
    spec = meta["preprocessing"]
    cfg = AdaptConfig()
    replay = pbc_model_images(DATA / "pbc_128", spec, "train", cfg.replay_pool + cfg.guard_cells, 0)
    pbc_val = pbc_model_images(DATA / "pbc_128", spec, "val", cfg.val_cells, 0)
    out: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "model": str(base.relative_to(REPO)
                 if base.is_relative_to(REPO) else base), "date": time.strftime("%Y-%m-%d"),
                 "recipe": dataclasses.asdict(cfg)}
    if a.tune:
        labs = simulated_labs(names, spec, 250)
        grid = json.loads(a.grid) if a.grid else [dict(learning_rate=lr, epochs=ep) for lr in (3e-5, 1e-4, 3e-4)
                                                  for ep in (4, 8)]
        out["tune"] = []
        for i, (lab_name, lab) in enumerate(labs.items()):
            if a.labs and i not in a.labs:
                continue
            for g in grid:
                row = run_one(base, lab, 50, 0, dataclasses.replace(cfg, **g), replay, pbc_val)
                out["tune"].append({"lab": lab_name, **g, **row})
    else:
        lab = external_lab(names, spec)
        test = pbc_model_images(DATA / "pbc_128", spec, "test", 0, 0)
        out["runs"] = [run_one(base, lab, n, seed, cfg, replay, pbc_val, test)
                       for n in a.cells for seed in range(a.seeds)]
        out["summary"] = summarise(out["runs"])
        print(markdown(out))
        if a.markdown:
            Path(a.markdown).write_text(markdown(out) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for n in sorted({r["cells"] for r in runs}):
        rs = [r for r in runs if r["cells"] == n]
        f = lambda k: [r[k] for r in rs]  # noqa: E731
        rows.append({"cells": n, "runs": len(rs), "before": float(np.mean(f("accuracy_before"))),
                     "after": float(np.mean(f("accuracy_after"))), "after_min": float(np.min(f("accuracy_after"))),
                     "after_max": float(np.max(f("accuracy_after"))), "accepted": int(sum(f("gate_accepted"))),
                     "seconds": float(np.mean(f("seconds"))),
                     "pbc_test_after": float(np.mean(f("pbc_test_after"))),
                     "pbc_test_before": float(np.mean(f("pbc_test_before")))})
    return rows


def markdown(out: dict) -> str:
    lines = ["| reviewed cells | runs | accuracy on the rest, before | after (mean, min-max) | gate accepted |"
             " adaptation time | PBC test before -> after |", "|---|---|---|---|---|---|---|"]
    for s in out["summary"]:
        lines.append(f"| {s['cells']} | {s['runs']} | {100 * s['before']:.1f} % | {100 * s['after']:.1f} % "
                     f"({100 * s['after_min']:.0f}-{100 * s['after_max']:.0f}) | {s['accepted']}/{s['runs']} | "
                     f"{s['seconds']:.0f} s | {100 * s['pbc_test_before']:.2f} -> {100 * s['pbc_test_after']:.2f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
