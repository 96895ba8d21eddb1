"""Evaluation with scikit-learn, calibration metrics and the report artifacts."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import calibration as cal
from .data import CLASS_NAMES


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of a Keras model in inference mode via a compiled function."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    out = [fn(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out, 0) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score,
                                 precision_recall_fscore_support, roc_auc_score)

    k = len(CLASS_NAMES)
    pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=list(range(k)), zero_division=0)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "per_class": {CLASS_NAMES[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                       "support": int(s[i])} for i in range(k)},
    }
    present = np.unique(labels)
    try:
        if len(present) == k:
            out["roc_auc_ovr_macro"] = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
            for i in range(k):
                out["per_class"][CLASS_NAMES[i]]["roc_auc_ovr"] = float(roc_auc_score(labels == i, probs[:, i]))
    except ValueError:
        pass
    return out


def evaluate(logits: np.ndarray, labels: np.ndarray, *, temperature: float, review_threshold: float | None = None,
             ood_threshold: float | None = None, n_bins: int = 15) -> dict[str, Any]:
    """All metrics of one split: classification (calibrated probs), ECE before/after T, coverage."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(labels, np.int64)
    raw = cal.softmax(logits, 1.0)
    probs = cal.softmax(logits, temperature)
    m = classification_metrics(probs, labels)
    m["ece_before"] = cal.ece(raw, labels, n_bins)
    m["ece_after"] = cal.ece(probs, labels, n_bins)
    m["nll_before"] = cal.nll(logits, labels, 1.0)
    m["nll_after"] = cal.nll(logits, labels, temperature)
    m["temperature"] = float(temperature)
    m["confusion_matrix"] = confusion_matrix(labels, probs.argmax(1), labels=list(range(len(CLASS_NAMES)))).tolist()
    if review_threshold is not None:
        cov, acc = cal.coverage_at(probs, labels, review_threshold)
        m["review_threshold"] = float(review_threshold)
        m["coverage_at_review_threshold"] = cov
        m["accepted_accuracy_at_review_threshold"] = acc
    if ood_threshold is not None:
        m["ood_flag_rate"] = float((cal.energy_score(logits) > ood_threshold).mean())
    return m


def write_artifacts(out_dir: str | Path, *, logits: np.ndarray, labels: np.ndarray, temperature: float,
                    metrics: dict[str, Any], review_threshold: float | None = None) -> dict[str, str]:
    """Confusion matrix CSV + PNG, reliability diagram, coverage curve, metrics JSON."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, np.int64)
    cm = np.asarray(metrics["test"]["confusion_matrix"] if "test" in metrics else metrics["confusion_matrix"])
    files = {}
    with open(out / "confusion_matrix.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred", *CLASS_NAMES])
        for i, row in enumerate(cm):
            w.writerow([CLASS_NAMES[i], *map(int, row)])
    files["confusion_matrix_csv"] = str(out / "confusion_matrix.csv")

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    short = [c.replace("immature_granulocyte", "imm. gran.") for c in CLASS_NAMES]
    ax.set_xticks(range(len(cm)), short, rotation=45, ha="right")
    ax.set_yticks(range(len(cm)), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=120)
    plt.close(fig)
    files["confusion_matrix_png"] = str(out / "confusion_matrix.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, t, title in ((axes[0], 1.0, "before (T=1)"), (axes[1], temperature, f"after (T={temperature:.3f})")):
        probs = cal.softmax(logits, t)
        edges, bins = cal.reliability(probs, labels, 15)
        e = cal.ece(probs, labels, 15)
        centers = (edges[:-1] + edges[1:]) / 2
        accs = [b[1] if b[2] else 0 for b in bins]
        ax.bar(centers, accs, width=edges[1] - edges[0], edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Reliability {title}: ECE {100 * e:.2f} %")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability_diagram.png", dpi=120)
    plt.close(fig)
    files["reliability_png"] = str(out / "reliability_diagram.png")

    probs = cal.softmax(logits, temperature)
    cov, acc = cal.coverage_curve(probs, labels)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(cov * 100, acc * 100)
    if review_threshold is not None:
        c, a = cal.coverage_at(probs, labels, review_threshold)
        ax.plot([c * 100], [a * 100], "ro", label=f"review threshold {review_threshold:.3f}: "
                                                  f"coverage {100 * c:.1f} %, acc {100 * a:.2f} %")
        ax.legend(loc="lower left")
    ax.axhline(99.5, color="gray", ls=":")
    ax.set_xlabel("coverage (% of cells accepted, most confident first)")
    ax.set_ylabel("accuracy of accepted cells (%)")
    ax.set_title("Accuracy vs coverage (test split)")
    ax.set_ylim(max(90.0, float(acc.min() * 100) - 0.5), 100.05)
    fig.tight_layout()
    fig.savefig(out / "coverage_curve.png", dpi=120)
    plt.close(fig)
    files["coverage_png"] = str(out / "coverage_curve.png")

    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    files["metrics_json"] = str(out / "metrics.json")
    return files


def evaluate_saved_model(model_dir: str | Path, data_dir: str | Path, *, split: str = "test",
                         batch_size: int = 256) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """End-to-end check of an exported version: decode + C++ preprocess (the version's spec) +
    the SavedModel's ``serving_default``; metrics with the version's temperature and thresholds."""
    import tensorflow as tf

    from .data import decode_files, load_index, preprocess_images

    meta = json.loads((Path(model_dir) / "assets.extra" / "hemovision.json").read_text())
    records = [r for r in load_index(data_dir) if r.split == split]
    x = preprocess_images(decode_files(data_dir, records), meta["preprocessing"])
    labels = np.array([r.label for r in records])
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    logits, probs = [], []
    for i in range(0, len(x), batch_size):
        out = serve(image=tf.constant(x[i:i + batch_size]))
        logits.append(out["logits"].numpy())
        probs.append(out["probabilities"].numpy())
    logits, probs = np.concatenate(logits), np.concatenate(probs)
    m = evaluate(logits, labels, temperature=meta["temperature"], review_threshold=meta["review_threshold"],
                 ood_threshold=meta["ood_threshold"])
    m["max_abs_diff_probabilities_vs_numpy"] = float(np.abs(probs - cal.softmax(logits, meta["temperature"])).max())
    return m, logits, labels


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hemovision_training.ml.evaluate",
                                 description="Evaluate an exported version on a split; write the report files.")
    ap.add_argument("--model", required=True, help="version folder, e.g. models/hemovision/1")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", help="write confusion matrix, reliability diagram, coverage curve, metrics.json")
    a = ap.parse_args(argv)
    m, logits, labels = evaluate_saved_model(a.model, a.data, split=a.split)
    meta = json.loads((Path(a.model) / "assets.extra" / "hemovision.json").read_text())
    if a.out:
        write_artifacts(a.out, logits=logits, labels=labels, temperature=meta["temperature"],
                        metrics={a.split: m, "val": meta["metrics"].get("val", {})},
                        review_threshold=meta["review_threshold"])
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr_macro", "ece_before", "ece_after",
            "coverage_at_review_threshold", "accepted_accuracy_at_review_threshold", "ood_flag_rate",
            "max_abs_diff_probabilities_vs_numpy")
    print(json.dumps({k: m.get(k) for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
