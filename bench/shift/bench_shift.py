"""Shift benchmark (make bench-shift): how each model does on another lab's cells.

    python bench/shift/bench_shift.py [--model models/hemovision/1 --model runs/.../2 ...]
                                      [--per-split 600] [--json bench/results/shift.json]

For every model, side by side on exactly the same images: the PBC val and test splits (a
stratified sample of --per-split images each) clean and under every shift of
bench/shift/shifts.py, plus ../shared/data/external_dev (another lab, 100 white cells).
Each image goes the way an upload goes: the model's own preprocessing spec through the C++
pipeline (hemovision_pixels), the SavedModel's `serving_default`, and the inference service's
own needs-review decision (hemovision_inference.service.build_results) plus the pixel
pipeline's review reasons (cell not found, cell size unusual).

Per model, split and shift: accuracy, macro-F1, ECE (15 bins, the served calibrated
probabilities), share flagged for review, share wrong and NOT flagged, and recall per class.
Two uses, kept apart: candidates are chosen on the shifted **val** split; the shifted test
split and external_dev are only reported.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shifts import SHIFTS, rng_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
N_BINS = 15


class Model:
    """One SavedModel version, used exactly as serving uses it."""

    def __init__(self, path: Path) -> None:
        import hemovision_pixels as px
        import tensorflow as tf
        from hemovision_inference.input_check import InputReference
        from hemovision_inference.service import read_metadata

        self.path = path
        self.meta = read_metadata(path.parent.parent, path.parent.name, int(path.name))
        self.spec = px.PreprocessSpec.from_dict(self.meta.preprocessing)
        self.fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        refs = InputReference.load()
        self.reference = refs.for_spec(self.meta.preprocessing) if refs is not None else None
        self.name = f"{path.parent.name}/{path.name}"

    def run(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """probabilities [N, 8], flagged [N] (any review reason), reasons per image."""
        import hemovision_pixels as px
        import tensorflow as tf
        from hemovision_inference.service import build_results

        probs, flagged, reasons = [], [], []
        for i in range(0, len(images), 64):
            xs, infos = zip(*(px.preprocess_with_info(im, self.spec) for im in images[i:i + 64]))
            x = np.stack(xs)
            out = {k: v.numpy() for k, v in self.fn(image=tf.constant(x)).items()}
            dist, thr = (None, float("inf"))
            if self.reference is not None:
                pre = self.meta.preprocessing
                dist, thr = self.reference.distance(x, pre["mean"], pre["std"]), self.reference.threshold
            for cell, info in zip(build_results(self.meta, out, dist, thr), infos):
                why = list(cell.review_reasons) + px.review_reasons(info, self.spec)
                reasons.append(why)
                flagged.append(bool(why))
            probs.append(out["probabilities"])
        return {"probabilities": np.concatenate(probs), "flagged": np.array(flagged), "reasons": reasons}


def ece(probs: np.ndarray, labels: np.ndarray) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    bins = np.minimum((conf * N_BINS).astype(int), N_BINS - 1)
    total = 0.0
    for b in range(N_BINS):
        m = bins == b
        if m.any():
            total += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    return float(total)


def metrics(run: dict, labels: np.ndarray, class_names: list[str]) -> dict:
    from sklearn.metrics import f1_score

    pred = run["probabilities"].argmax(1)
    wrong = pred != labels
    present = sorted(set(labels.tolist()))
    return {
        "n": int(len(labels)),
        "accuracy": float((~wrong).mean()),
        "macro_f1": float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)),
        "ece": ece(run["probabilities"], labels),
        "flagged": float(run["flagged"].mean()),
        "wrong_not_flagged": float((wrong & ~run["flagged"]).mean()),
        "recall": {class_names[c]: float((pred[labels == c] == c).mean()) for c in present},
    }


def pbc_sample(split: str, per_split: int, class_names: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """A stratified, seeded sample of a PBC split (all of it when per_split is 0)."""
    import hemovision_pixels as px

    rows = [r for r in csv.DictReader(open(DATA / "pbc_128" / "splits.csv")) if r["split"] == split]
    if per_split:
        rng = np.random.default_rng(20261207)
        by_class = {c: [r for r in rows if r["label"] == c] for c in class_names}
        share = per_split / len(rows)
        rows = [r for c in class_names for r in
                rng.permutation(by_class[c])[:max(1, round(share * len(by_class[c])))].tolist()]
    images = [px.decode_image((DATA / "pbc_128" / r["path"]).read_bytes()) for r in rows]
    return images, np.array([class_names.index(r["label"]) for r in rows])


def external(class_names: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    import hemovision_pixels as px

    rows = list(csv.DictReader(open(DATA / "external_dev" / "labels.csv")))
    images = [px.decode_image((DATA / "external_dev" / r["path"]).read_bytes()) for r in rows]
    return images, np.array([class_names.index(r["label"]) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="SavedModel version dir (repeat); default: every "
                    "version under models/hemovision")
    ap.add_argument("--per-split", type=int, default=600, help="PBC images per split (0 = the whole split)")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "shift.json"))
    ap.add_argument("--markdown", help="also write the summary table as Markdown to this file")
    args = ap.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    paths = [Path(p) for p in args.model] if args.model else sorted(
        (p for p in (REPO / "models" / "hemovision").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    models = [Model(p) for p in paths]
    class_names = models[0].meta.class_names
    started = time.time()
    result: dict = {"models": {m.name: {"path": str(m.path), "preprocessing": m.meta.preprocessing} for m in models},
                    "per_split": args.per_split, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                    "splits": {}, "external_dev": {}}

    ext_images, ext_labels = external(class_names)
    for m in models:
        result["external_dev"][m.name] = metrics(m.run(ext_images), ext_labels, class_names)
        print(f"external_dev {m.name}: acc {result['external_dev'][m.name]['accuracy']:.1%}", flush=True)

    for split in args.splits.split(","):
        images, labels = pbc_sample(split, args.per_split, class_names)
        table: dict = {}
        cases = [("clean", "clean", None)] + [(fam, lvl, fn) for fam, lv in SHIFTS.items() for lvl, fn in lv.items()]
        for family, level, fn in cases:
            name = family if fn is None else f"{family}: {level}"
            shifted = images if fn is None else [fn(im, rng_for(name, i)) for i, im in enumerate(images)]
            table[name] = {"family": family, "models": {m.name: metrics(m.run(shifted), labels, class_names)
                                                       for m in models}}
            print(f"{split:5} {name:28} " + "  ".join(
                f"{m.name} acc {table[name]['models'][m.name]['accuracy']:.1%} "
                f"wnf {table[name]['models'][m.name]['wrong_not_flagged']:.1%}" for m in models), flush=True)
        families = sorted({v["family"] for v in table.values()} - {"clean"})
        summary = {m.name: {fam: float(np.mean([v["models"][m.name]["accuracy"] for v in table.values()
                                                if v["family"] == fam])) for fam in families} for m in models}
        for m in models:
            summary[m.name]["mean_over_families"] = float(np.mean([summary[m.name][f] for f in families]))
            summary[m.name]["worst_wrong_not_flagged"] = max(v["models"][m.name]["wrong_not_flagged"]
                                                             for v in table.values())
        result["splits"][split] = {"n": int(len(labels)), "shifts": table, "family_accuracy": summary}

    result["seconds"] = round(time.time() - started, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    md = markdown(result, [m.name for m in models])
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    print(f"written {args.json} in {result['seconds']:.0f}s")


def markdown(result: dict, names: list[str]) -> str:
    lines = []
    for split, s in result["splits"].items():
        lines += [f"\n**{split}** split ({s['n']} images): accuracy / wrong-and-not-flagged / flagged, per shift\n",
                  "| shift | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for name, row in s["shifts"].items():
            cells = [f"{row['models'][n]['accuracy']:.1%} / {row['models'][n]['wrong_not_flagged']:.1%} / "
                     f"{row['models'][n]['flagged']:.0%}" for n in names]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("| **mean over families** | " + " | ".join(
            f"**{s['family_accuracy'][n]['mean_over_families']:.1%}**" for n in names) + " |")
    lines += ["\n**external_dev** (100 cells, another lab): accuracy / macro-F1 / ECE / flagged / wrong-and-not-flagged\n",
              "| model | accuracy | macro-F1 | ECE | flagged | wrong, not flagged |", "|---|---|---|---|---|---|"]
    for n in names:
        e = result["external_dev"][n]
        lines.append(f"| {n} | {e['accuracy']:.1%} | {e['macro_f1']:.3f} | {e['ece']:.3f} | {e['flagged']:.0%} | "
                     f"{e['wrong_not_flagged']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
