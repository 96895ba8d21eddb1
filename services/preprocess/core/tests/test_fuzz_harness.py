"""The atheris harness of `make fuzz` (bench/fuzz) on the image decoder and the C++ chain behind it, for a
few thousand runs: so the harness cannot rot between the fixed-budget runs (docs/reliability.md "Fuzzing").
Under `make sanitize-preprocess` (HV_SANITIZE_STAGE set) it fuzzes the ASan + UBSan build instead, with
HV_FUZZ_SANITIZED=1 only: that costs ~25 s of CI there (measured 24 s on 2 shared cores), the plain run ~7 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
RUNNER = REPO / "bench" / "fuzz" / "run_fuzz.py"
RUNS = int(os.environ.get("HV_FUZZ_RUNS", "2000"))


def test_pixels_fuzz_harness_runs_clean(tmp_path):
    pytest.importorskip("atheris")
    cmd = [sys.executable, str(RUNNER), "--targets", "pixels", "--runs", str(RUNS), "--instrument", "ours",
           "--seed", "1", "--out", str(tmp_path)]
    stage = os.environ.get("HV_SANITIZE_STAGE")
    if stage and os.environ.get("HV_FUZZ_SANITIZED") != "1":
        pytest.skip("the sanitized fuzz smoke run needs HV_FUZZ_SANITIZED=1 (CI time); `make fuzz FUZZ_ASAN=1` runs it")
    if stage:
        cmd += ["--asan-stage", stage]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    log = "".join(p.read_text(errors="replace")[-4000:] for p in tmp_path.glob("*/fuzz.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + log
    (result,) = json.loads((tmp_path / "summary.json").read_text())["targets"]
    assert result["execs"] >= RUNS and not result["findings"], result
    # Coverage feedback reaches decode.py (a blind fuzzer reports no edges: the editable install's loader,
    # or libasan's __sanitizer_cov stubs ahead of libFuzzer's, both did that).
    assert result["edges"] >= 60, result
    assert result["asan"] == bool(stage)
