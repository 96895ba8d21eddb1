"""Combine trained single models into one ensemble version (mean of the members' logits).

    python -m hemovision_training.ml.ensemble --data ../shared/data/pbc_128 --out runs/ensemble \
        --member runs/member_a --member runs/member_b [--model-base models --version 1 --replace]

A member is a training run folder (config.json + checkpoints/best.weights.h5 or final.keras) or an
exported single-model version folder (assets.extra/hemovision.json; weights read from the
SavedModel's variables). The ensemble then goes through the same finishing steps as a training run
(finish.py: BN re-estimation kept only if val improves, temperature + review/OOD thresholds on val,
test report, atomic export), so its calibration and thresholds are those of the combined logits.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ARCH_KEYS = ("widths", "blocks", "stem_width", "dropout")


def _member_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]) for k in ARCH_KEYS if k in cfg}


def build_member(input_size: int, config: dict[str, Any]):
    """An untrained single network with a member's architecture (lists from JSON -> tuples)."""
    from .model import build_model

    return build_model(input_size, **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def load_member(path: str | Path):
    """(keras model, member description) of a run folder or an exported single-model version."""
    import tensorflow as tf

    from .model import gradcam_model

    p = Path(path)
    meta_file = p / "assets.extra" / "hemovision.json"
    if (p / "config.json").is_file():
        cfg = json.loads((p / "config.json").read_text())
        state = json.loads((p / "state.json").read_text()) if (p / "state.json").is_file() else {}
        arch = _member_config(cfg)
        model = build_member(int(cfg.get("input_size", 64)), arch)
        best = p / "checkpoints" / "best.weights.h5"
        if best.is_file():
            model.load_weights(best)
        else:
            import keras
            model.set_weights(keras.models.load_model(p / "final.keras", compile=False).get_weights())
        desc = {"source": str(p), "config": arch, "seed": cfg.get("seed"), "epochs": state.get("epoch"),
                "best_epoch": state.get("best_epoch"), "seconds": state.get("seconds")}
    elif meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        recipe = meta.get("training", {}).get("recipe", {})
        if "members" in recipe:
            raise ValueError(f"{p} is already an ensemble; give its members instead")
        arch = _member_config(recipe)
        model = build_member(int(meta["input_size"]), arch)
        # the export wraps the network as module.model (a Grad-CAM view with the same variables)
        ckpt = tf.train.Checkpoint(model=gradcam_model(model, meta.get("gradcam_layer", "features")),
                                   temperature=tf.Variable(1.0))
        ckpt.restore(str(p / "variables" / "variables")).expect_partial()
        desc = {"source": f"{meta.get('model_name')} version {meta.get('version')} ({p})", "config": arch,
                "seed": recipe.get("seed"), "epochs": meta.get("training", {}).get("epochs"),
                "best_epoch": meta.get("training", {}).get("best_epoch"),
                "seconds": meta.get("training", {}).get("seconds"),
                "test_accuracy_alone": meta.get("metrics", {}).get("test", {}).get("accuracy"),
                "gradcam_layer": meta.get("gradcam_layer")}
    else:
        raise FileNotFoundError(f"{p}: neither a training run (config.json) nor an exported version")
    return model, desc


def build(members: list[str]):
    """(the ensemble Keras model with every member's weights loaded, the member descriptions,
    the members as single models)."""
    from .model import build_ensemble, load_member_weights

    loaded = [load_member(m) for m in members]
    if not loaded:
        raise ValueError("an ensemble needs at least one member")
    sizes = {int(m.inputs[0].shape[1]) for m, _ in loaded}
    if len(sizes) != 1:
        raise ValueError(f"members disagree on input size: {sorted(sizes)}")
    ens = build_ensemble([d["config"] for _, d in loaded], input_size=sizes.pop())
    for i, (m, _) in enumerate(loaded):
        load_member_weights(ens, i, m)
    return ens, [d for _, d in loaded], [m for m, _ in loaded]


def main(argv: list[str] | None = None) -> int:
    import keras

    from .data import prepare_data
    from .model import member_prefix
    from .finish import finish
    from .run import TrainConfig, run_logger, summary_json

    ap = argparse.ArgumentParser(prog="python -m hemovision_training.ml.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--member", action="append", required=True, help="run folder or exported version (repeat)")
    ap.add_argument("--gradcam-layer", default="s3b2_out",
                    help="member layer whose feature map Grad-CAM uses (8x8 at 64 px); one per member")
    ap.add_argument("--cache-dir")
    ap.add_argument("--model-base")
    ap.add_argument("--model-name", default="hemovision")
    ap.add_argument("--version", type=int)
    ap.add_argument("--replace", action="store_true")
    a = ap.parse_args(argv)

    t_start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = run_logger(out)
    model, members, singles = build(a.member)
    input_size = int(model.inputs[0].shape[1])
    cfg = TrainConfig(data_dir=a.data, out_dir=str(out), input_size=input_size, cache_dir=a.cache_dir,
                      model_base=a.model_base, model_name=a.model_name, version=a.version, replace=a.replace)
    keras.utils.set_random_seed(cfg.seed)
    cache_dir = cfg.cache_dir if cfg.cache_dir is not None else str(out.parent / "cache")
    data = prepare_data(cfg.data_dir, input_size=input_size, cache_dir=cache_dir, seed=cfg.seed, log=log.info)
    log.info("ensemble of %d members, %d parameters: %s", len(members), model.count_params(),
             json.dumps(members))
    # the decision to combine is made on val: each member alone vs the mean of their logits
    import numpy as np

    from .evaluate import predict_logits
    xv, yv = data.x["val"], data.y["val"]
    member_logits = []
    for m, single in zip(members, singles):
        member_logits.append(predict_logits(single, xv))
        m["val_accuracy_alone"] = float((member_logits[-1].argmax(1) == yv).mean())
    val_ens = float((np.mean(member_logits, 0).argmax(1) == yv).mean())
    log.info("val accuracy: members alone %s, ensemble %.4f",
             [round(m["val_accuracy_alone"], 4) for m in members], val_ens)
    seconds = sum(float(m.get("seconds") or 0.0) for m in members)
    recipe = {
        "architecture": f"ensemble of {len(members)} ResNet-style CNNs (basic blocks, GAP, linear head); "
                        "logits = mean of the members' logits",
        "parameters": int(model.count_params()),
        "members": members,
        "member_recipe": "each member: AdamW + linear warmup + cosine decay over a wall-clock budget, "
                         "cross-entropy with sqrt inverse-frequency class weights, dihedral flips/rot90, "
                         "integer shift, zoom, colour/stain jitter; different seeds and widths",
        "input_size": input_size,
    }
    state = {"epoch": sum(int(m.get("epochs") or 0) for m in members), "best_epoch": None}
    gradcam = ",".join(member_prefix(i) + a.gradcam_layer for i in range(len(members)))
    r = finish(model, data, cfg, out, log, state, seconds, t_start, recipe=recipe, gradcam_layer=gradcam)
    print(summary_json(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
