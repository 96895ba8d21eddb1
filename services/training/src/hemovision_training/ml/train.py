"""Training: ``train(config, progress_callback)`` for the training service, and a CLI.

    python -m hemovision_training.ml.train --data ../shared/data/pbc_128 --out runs/<name> \\
        --epochs N [--resume] [--model-base models --version 1 --replace]

Writes to ``out_dir``: train.log, history.csv, tb/ (TensorBoard), checkpoints/ (last.keras with
optimizer state for --resume, best.weights.h5), state.json; then the post-training steps
(finish.py) write report/ (metrics + plots), logits.npz, final.keras and result.json.
The configuration, the run's log and the printed summary live in run.py.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .finish import finalize, finish
from .run import TrainConfig, run_logger, summary_json

__all__ = ["ProgressCallback", "TrainConfig", "finalize", "main", "train"]

ProgressCallback = Callable[[int, int, dict], None]


def _build_and_compile(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    from .model import build_model

    model = build_model(cfg.input_size, widths=tuple(cfg.widths), blocks=tuple(cfg.blocks),
                        stem_width=cfg.stem_width, dropout=cfg.dropout, norm=cfg.norm)
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
    if cfg.time_budget:
        schedule = cfg.learning_rate * 0.05  # set every step by TimeCosine
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate * 0.05 if warm else cfg.learning_rate,
            decay_steps=max(1, total - warm), alpha=cfg.min_lr_fraction,
            warmup_target=cfg.learning_rate if warm else None, warmup_steps=warm)
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay,
                                 clipnorm=5.0)
    opt.exclude_from_weight_decay(var_names=["bn", "bias"])
    if cfg.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt, loss=loss, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
                  if not cfg.label_smoothing else [keras.metrics.CategoricalAccuracy(name="accuracy")],
                  jit_compile=False)
    return model


def train(config: TrainConfig, progress_callback: ProgressCallback | None = None) -> dict[str, Any]:
    """Train, calibrate, evaluate (val + test) and, if ``config.model_base`` is set, export.

    ``progress_callback(epoch, total_epochs, metrics)`` is called after every epoch.
    Returns {"metrics", "temperature", "review_threshold", "ood_threshold", "export_path", ...}.
    """
    import keras
    import tensorflow as tf

    from .data import CLASS_NAMES, class_weights, lab_augmented_copies, make_dataset, make_lab_dataset, prepare_data

    cfg = config
    t_start = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    log = run_logger(out)
    log.info("config %s", json.dumps(cfg.to_dict()))
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    keras.utils.set_random_seed(cfg.seed)

    cache_dir = cfg.cache_dir if cfg.cache_dir is not None else str(out.parent / "cache")
    data = prepare_data(cfg.data_dir, input_size=cfg.input_size, cache_dir=cache_dir,
                        limit_per_class=cfg.limit_per_class, seed=cfg.seed, log=log.info,
                        spec_version=cfg.spec_version)
    spec = data.spec
    xtr, ytr = data.x["train"], data.y["train"]
    copies = lab_augmented_copies(cfg.data_dir, data, copies=cfg.lab_copies, seed=cfg.seed, cache_dir=cache_dir,
                                  log=log.info) if cfg.lab_copies else []
    log.info("data: train %d val %d test %d, hash %s, prepared in %.1fs", len(ytr), len(data.y["val"]),
             len(data.y["test"]), data.data_hash, time.time() - t_start)

    cw = class_weights(ytr, power=cfg.class_weight_power)
    state_file = out / "state.json"
    last_ckpt = out / "checkpoints" / "last.keras"
    best_ckpt = out / "checkpoints" / "best.weights.h5"
    resuming = cfg.resume and last_ckpt.is_file() and state_file.is_file()
    state = json.loads(state_file.read_text()) if resuming else \
        {"epoch": 0, "best_val_accuracy": None, "best_epoch": None, "seconds": 0.0}
    if copies:
        # a resumed run continues the copy rotation and the order where it stopped
        train_ds = make_lab_dataset(xtr, copies, ytr, cw[ytr], batch_size=cfg.batch_size, spec=spec,
                                    seed=cfg.seed, lab_share=cfg.lab_share, first_epoch=state["epoch"])
    else:
        train_ds = make_dataset(xtr, ytr, batch_size=cfg.batch_size, training=True, augment=cfg.augment,
                                spec=spec, seed=cfg.seed, sample_weights=cw[ytr])
    if cfg.label_smoothing:
        train_ds = train_ds.map(lambda x, y, w: (x, tf.one_hot(y, len(CLASS_NAMES)), w))
    has_val = len(data.y["val"]) > 0
    val_ds = make_dataset(data.x["val"], data.y["val"], batch_size=256, training=False, augment=False) \
        if has_val else None
    if val_ds is not None and cfg.label_smoothing:
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, len(CLASS_NAMES))))
    steps = int(np.ceil(len(ytr) / cfg.batch_size))

    if resuming:
        model = keras.models.load_model(last_ckpt)
        log.info("resumed from %s at epoch %d", last_ckpt, state["epoch"])
    else:
        model = _build_and_compile(cfg, steps)
    log.info("model %s: %d parameters", model.name, model.count_params())

    fit_start = time.time()
    seconds_before = float(state.get("seconds", 0.0))

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            lr = self.model.optimizer.learning_rate
            logs["lr"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            logs["epoch_seconds"] = time.time() - self._t
            va = logs.get("val_accuracy")
            if va is not None and (state["best_val_accuracy"] is None or va >= state["best_val_accuracy"]):
                state["best_val_accuracy"], state["best_epoch"] = va, epoch + 1
                self.model.save_weights(best_ckpt)
            self.model.save(last_ckpt)
            state["epoch"] = epoch + 1
            state["seconds"] = seconds_before + time.time() - fit_start
            state_file.write_text(json.dumps(state))
            log.info("epoch %d/%d %s", epoch + 1, cfg.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in sorted(logs.items())))
            with open(out / "history.csv", "a") as f:
                f.write(json.dumps({"epoch": epoch + 1, **logs}) + "\n")
            if progress_callback is not None:
                progress_callback(epoch + 1, cfg.epochs, logs)
            if cfg.max_seconds is not None and time.time() - t_start > cfg.max_seconds:
                log.info("time budget of %.0fs reached: stopping after epoch %d", cfg.max_seconds, epoch + 1)
                self.model.stop_training = True

    class TimeCosine(keras.callbacks.Callback):
        """Linear warmup over ``warmup_epochs`` steps, then cosine decay over the remaining wall-clock
        budget: the schedule anneals fully by ``time_budget`` however busy the shared CPU is."""

        def __init__(self):
            super().__init__()
            self.warm_steps = int(cfg.warmup_epochs * steps)
            self.peak, self.floor = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_fraction

        def _elapsed(self):
            return seconds_before + time.time() - fit_start

        def on_train_batch_begin(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            if step < self.warm_steps:
                lr = self.peak * (0.05 + 0.95 * step / self.warm_steps)
            else:
                if state.get("warm_end_seconds") is None:
                    state["warm_end_seconds"] = self._elapsed()
                w = state["warm_end_seconds"]
                p = min(1.0, max(0.0, (self._elapsed() - w) / max(1.0, cfg.time_budget - w)))
                state["schedule_progress"] = p
                lr = self.floor + (self.peak - self.floor) * 0.5 * (1 + np.cos(np.pi * p))
            self.model.optimizer.learning_rate.assign(lr)

        def on_epoch_end(self, epoch, logs=None):
            if state.get("schedule_progress", 0.0) >= 1.0:
                log.info("time budget %.0fs used: schedule annealed, stopping after epoch %d",
                         cfg.time_budget, epoch + 1)
                self.model.stop_training = True

    callbacks: list = [TimeCosine()] if cfg.time_budget else []
    callbacks.append(Progress())
    if has_val:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, verbose=1))
    if cfg.limit_per_class is None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "tb"), histogram_freq=0,
                                                     write_graph=False, update_freq="epoch",
                                                     profile_batch=0))
    if state["epoch"] < cfg.epochs:
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  callbacks=callbacks, verbose=2 if cfg.limit_per_class is None else 0)
    train_seconds = float(state["seconds"])
    if best_ckpt.is_file():
        model.load_weights(best_ckpt)
        log.info("loaded best weights (epoch %s, val acc %s)", state["best_epoch"], state["best_val_accuracy"])

    return finish(model, data, cfg, out, log, state, train_seconds, t_start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hemovision_training.ml.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--limit-per-class", type=int)
    p.add_argument("--patience", type=int, default=12)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--cache-dir")
    p.add_argument("--model-base")
    p.add_argument("--model-name", default="hemovision")
    p.add_argument("--version", type=int)
    p.add_argument("--replace", action="store_true")
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--time-budget", type=float, help="seconds: cosine LR over wall time, stop when spent")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="checkpoint --finalize uses")
    p.add_argument("--widths", type=lambda v: tuple(int(i) for i in v.split(",")), default=TrainConfig.widths,
                   help="channels per stage, e.g. 40,80,160,320")
    p.add_argument("--blocks", type=lambda v: tuple(int(i) for i in v.split(",")), default=TrainConfig.blocks,
                   help="residual blocks per stage, e.g. 1,2,2,1")
    p.add_argument("--stem-width", type=int, default=TrainConfig.stem_width)
    p.add_argument("--norm", choices=("batch", "group"), default=TrainConfig.norm)
    p.add_argument("--spec-version", type=int, choices=(1, 2), default=TrainConfig.spec_version,
                   help="2 = input standardisation (locate + re-frame + white balance)")
    p.add_argument("--lab-copies", type=int, default=TrainConfig.lab_copies,
                   help="lab-augmented copies of the train split (0 = off)")
    p.add_argument("--lab-share", type=float, default=TrainConfig.lab_share)
    p.add_argument("--finalize", action="store_true",
                   help="skip training: post-process the run in --out (calibrate, evaluate, export)")
    a = p.parse_args(argv)
    cfg = TrainConfig(data_dir=a.data, out_dir=a.out, epochs=a.epochs, batch_size=a.batch_size,
                      input_size=a.input_size, learning_rate=a.lr, weight_decay=a.weight_decay, seed=a.seed,
                      limit_per_class=a.limit_per_class, patience=a.patience, resume=a.resume,
                      augment=not a.no_augment, cache_dir=a.cache_dir, model_base=a.model_base,
                      model_name=a.model_name, version=a.version, replace=a.replace, max_seconds=a.max_seconds,
                      time_budget=a.time_budget, finalize_checkpoint=a.checkpoint, widths=a.widths,
                      blocks=a.blocks, stem_width=a.stem_width, norm=a.norm, spec_version=a.spec_version,
                      lab_copies=a.lab_copies, lab_share=a.lab_share)
    r = finalize(cfg) if a.finalize else train(cfg)
    print(summary_json(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
