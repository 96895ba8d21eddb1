"""One training run's folder: its configuration (``TrainConfig``, written to config.json), its log
(``run_logger``: train.log and stderr) and the one-line JSON summary the CLIs print (``summary_json``).

Shared by ``train`` (training), ``finish`` (the post-training steps) and ``ensemble``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    epochs: int = 40
    batch_size: int = 128
    input_size: int = 64
    seed: int = 20240601
    limit_per_class: Optional[int] = None
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    min_lr_fraction: float = 0.01
    label_smoothing: float = 0.0
    class_weight_power: float = 0.5
    patience: int = 12
    augment: bool = True
    widths: tuple = (40, 80, 160, 320)
    blocks: tuple = (1, 2, 2, 1)
    stem_width: int = 16
    dropout: float = 0.1
    resume: bool = False
    cache_dir: Optional[str] = None           # default: <out_dir>/../cache
    model_base: Optional[str] = None          # export there when set
    model_name: str = "hemovision"
    version: Optional[int] = None
    replace: bool = False
    review_target_accuracy: float = 0.995
    ood_percentile: float = 99.0
    max_seconds: Optional[float] = None       # stop after the epoch that crosses this budget
    time_budget: Optional[float] = None       # seconds of training: cosine schedule over wall time
    finalize_checkpoint: str = "best"         # finalize(): "best" (by val accuracy) or "last" epoch
    bn_recalibrate: bool = True               # re-estimate BN statistics on clean train data (kept if val improves)
    norm: str = "batch"                       # "batch" (v1) or "group": no batch statistics at serving time
    spec_version: int = 1                     # 2: input standardisation (locate + re-frame + white balance)
    lab_copies: int = 0                       # lab-augmented copies of train (lab_augment.py); 0 = off
    lab_share: float = 0.75                   # share of each epoch's images taken from a lab-augmented copy

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d


def run_logger(out_dir: Path) -> logging.Logger:
    """The run's logger: ``<out_dir>/train.log`` and stderr, not propagated to the root logger."""
    log = logging.getLogger(f"hemovision_training.ml.train[{out_dir}]")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        fh = logging.FileHandler(out_dir / "train.log")
        fh.setFormatter(fmt)
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(fh)
        log.addHandler(sh)
    return log


def summary_json(result: dict[str, Any]) -> str:
    """The one-line JSON the CLIs print at the end: test metrics, temperature, export path."""
    t = result["metrics"]["test"]
    return json.dumps({"accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "ece_before": t["ece_before"],
                       "ece_after": t["ece_after"], "temperature": result["temperature"],
                       "export_path": result["export_path"]})
