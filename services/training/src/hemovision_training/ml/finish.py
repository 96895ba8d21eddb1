"""The steps after training, shared by a training run, ``finalize`` and the ensemble: BatchNorm
re-estimation (kept only if it helps on val), temperature and review/OOD thresholds fitted on val,
the test report, the optional export and result.json (``finish``).

``finalize(config)`` redoes them for a run folder from its checkpoint, without training
(``python -m hemovision_training.ml.train --finalize``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .run import TrainConfig, run_logger


def recalibrate_batchnorm(model, x: np.ndarray, *, batch_size: int = 256, seed: int = 0,
                          max_images: int = 4096) -> None:
    """Re-estimate every BatchNormalization layer's moving mean/variance as the plain average of
    batch statistics over ``x`` (un-augmented training images, random batches), replacing the
    exponential averages collected on augmented batches while the weights were still moving."""
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    old = [b.momentum for b in bns]
    order = np.random.default_rng(seed).permutation(len(x))[:max_images]
    try:
        for k, i in enumerate(range(0, len(order) - batch_size + 1, batch_size)):
            for b in bns:
                b.momentum = k / (k + 1.0)   # running mean over batches: first batch replaces
            model(x[np.sort(order[i:i + batch_size])], training=True)
    finally:
        for b, m in zip(bns, old):
            b.momentum = m


def finish(model, data, cfg: TrainConfig, out: Path, log, state: dict, train_seconds: float,
           t_start: float, *, recipe: dict[str, Any] | None = None,
           gradcam_layer: str | None = None) -> dict[str, Any]:
    """BN re-estimation (kept only if it helps on val), temperature + thresholds on val, test report,
    optional export, result.json."""
    from . import calibration as cal
    from .evaluate import evaluate, predict_logits, write_artifacts
    from .drift_reference import reference_from_logits
    from .export import export_model

    spec = data.spec
    xtr, ytr = data.x["train"], data.y["train"]
    has_val = len(data.y["val"]) > 0
    val_x, val_y = (data.x["val"], data.y["val"]) if has_val else (xtr, ytr)
    val_logits = predict_logits(model, val_x)
    bn_note = "not attempted"
    if cfg.bn_recalibrate and len(ytr) >= 1024:
        before_w = model.get_weights()
        acc0, nll0 = float((val_logits.argmax(1) == val_y).mean()), cal.nll(val_logits, val_y)
        recalibrate_batchnorm(model, xtr, seed=cfg.seed)
        new_logits = predict_logits(model, val_x)
        acc1, nll1 = float((new_logits.argmax(1) == val_y).mean()), cal.nll(new_logits, val_y)
        log.info("BN re-estimation on un-augmented train: val acc %.4f -> %.4f, val NLL %.4f -> %.4f",
                 acc0, acc1, nll0, nll1)
        if (acc1, -nll1) > (acc0, -nll0):
            val_logits, bn_note = new_logits, f"kept (val acc {acc0:.4f} -> {acc1:.4f})"
        else:
            model.set_weights(before_w)
            bn_note = f"rejected (val acc {acc0:.4f} -> {acc1:.4f})"
    test_logits = predict_logits(model, data.x["test"])
    test_y = data.y["test"]
    temperature = cal.fit_temperature(val_logits, val_y)
    review_t = cal.review_threshold(cal.softmax(val_logits, temperature), val_y, cfg.review_target_accuracy)
    ood_t = cal.ood_threshold(val_logits, cfg.ood_percentile)
    metrics = {
        "val": evaluate(val_logits, val_y, temperature=temperature, review_threshold=review_t, ood_threshold=ood_t),
        "test": evaluate(test_logits, test_y, temperature=temperature, review_threshold=review_t,
                         ood_threshold=ood_t),
    }
    np.savez(out / "logits.npz", val_logits=val_logits, val_y=val_y, test_logits=test_logits, test_y=test_y)
    t = metrics["test"]
    log.info("T=%.4f review_threshold=%.4f ood_threshold=%.4f", temperature, review_t, ood_t)
    log.info("val: acc %.4f macro_f1 %.4f ece %.4f -> %.4f", metrics["val"]["accuracy"], metrics["val"]["macro_f1"],
             metrics["val"]["ece_before"], metrics["val"]["ece_after"])
    log.info("test: acc %.4f bal_acc %.4f macro_f1 %.4f ece %.4f -> %.4f coverage@review %.4f (acc %.4f)",
             t["accuracy"], t["balanced_accuracy"], t["macro_f1"], t["ece_before"], t["ece_after"],
             t.get("coverage_at_review_threshold", float("nan")),
             t.get("accepted_accuracy_at_review_threshold", float("nan")))
    if len(test_y):
        write_artifacts(out / "report", logits=test_logits, labels=test_y, temperature=temperature,
                        metrics=metrics, review_threshold=review_t)

    training_info = {
        "recipe": recipe | {"batchnorm_reestimation": bn_note} if recipe is not None else cfg.to_dict() | {
                                    "architecture": "ResNet-style CNN (basic blocks), GAP, linear head",
                                    "parameters": int(model.count_params()),
                                    "optimizer": "AdamW + linear warmup + cosine decay"
                                                 + (" over the wall-clock budget" if cfg.time_budget else ""),
                                    "loss": "cross-entropy, sqrt inverse-frequency class weights",
                                    "augmentation": "dihedral flips/rot90, integer shift, zoom (1/4 of images), "
                                                    "colour/stain jitter"
                                                    + (f"; {cfg.lab_share:.0%} of each epoch from "
                                                       f"{cfg.lab_copies} lab-augmented copies (framing, size, "
                                                       "stain, tint, gamma, blur, JPEG, noise)"
                                                       if cfg.lab_copies else ""),
                                    "batchnorm_reestimation": bn_note},
        "epochs": int(state["epoch"]),
        "best_epoch": state["best_epoch"],
        "seconds": round(train_seconds, 1),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    result = {"metrics": metrics, "temperature": temperature, "review_threshold": review_t,
              "ood_threshold": ood_t, "spec": spec, "data_hash": data.data_hash,
              "training_info": training_info, "gradcam_layer": gradcam_layer, "export_path": None,
              "out_dir": str(out)}
    model.save(out / "final.keras")
    if cfg.model_base:
        path = export_model(model, spec=spec, temperature=temperature, review_threshold=review_t,
                            ood_threshold=ood_t, metrics=_compact(metrics), training_info=training_info,
                            data_hash=data.data_hash, model_base=cfg.model_base, model_name=cfg.model_name,
                            version=cfg.version, replace=cfg.replace, gradcam_layer=gradcam_layer,
                            drift_reference=reference_from_logits(
                                val_logits, temperature, source=f"PBC val ({len(val_y)} cells), at export"))
        result["export_path"] = str(path)
        log.info("exported %s", path)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    log.info("done in %.1fs", time.time() - t_start)
    return result


def finalize(config: TrainConfig) -> dict[str, Any]:
    """Redo the post-training steps of a run in ``config.out_dir`` (best checkpoint -> BN
    re-estimation, calibration, evaluation, optional export) without training."""
    import keras

    from .data import prepare_data
    from .model import build_model

    cfg = config
    t_start = time.time()
    out = Path(cfg.out_dir)
    log = run_logger(out)
    keras.utils.set_random_seed(cfg.seed)
    state = json.loads((out / "state.json").read_text())
    cache_dir = cfg.cache_dir if cfg.cache_dir is not None else str(out.parent / "cache")
    data = prepare_data(cfg.data_dir, input_size=cfg.input_size, cache_dir=cache_dir,
                        limit_per_class=cfg.limit_per_class, seed=cfg.seed, log=log.info,
                        spec_version=cfg.spec_version)
    model = build_model(cfg.input_size, widths=tuple(cfg.widths), blocks=tuple(cfg.blocks),
                        stem_width=cfg.stem_width, dropout=cfg.dropout, norm=cfg.norm)
    best = out / "checkpoints" / "best.weights.h5"
    if best.is_file() and cfg.finalize_checkpoint == "best":
        model.load_weights(best)
    else:
        model.set_weights(keras.models.load_model(out / "checkpoints" / "last.keras").get_weights())
    log.info("finalize: %s checkpoint (best epoch %s of %s)", cfg.finalize_checkpoint, state.get("best_epoch"),
             state.get("epoch"))
    if cfg.finalize_checkpoint == "last":
        state = dict(state, best_epoch=state.get("epoch"))
    return finish(model, data, cfg, out, log, state, float(state.get("seconds", 0.0)), t_start)


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics for hemovision.json (everything; confusion matrix kept for the registry)."""
    return json.loads(json.dumps(metrics))

