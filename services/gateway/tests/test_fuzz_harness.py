"""The atheris harness of `make fuzz` (bench/fuzz) on the batch ZIP reader and the format sniffing, for a few
thousand runs each, so the harness cannot rot between the fixed-budget runs (docs/reliability.md "Fuzzing");
and what the fuzzer found, kept as regression tests with the inputs built in code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hemovision_gateway.batches import storage
from hemovision_gateway.settings import Settings

REPO = Path(__file__).resolve().parents[3]
RUNNER = REPO / "bench" / "fuzz" / "run_fuzz.py"
RUNS = int(os.environ.get("HV_FUZZ_RUNS", "2000"))


def test_zip_and_sniff_fuzz_harness_runs_clean(tmp_path):
    pytest.importorskip("atheris")
    cmd = [sys.executable, str(RUNNER), "--targets", "zip", "sniff", "--runs", str(RUNS), "--instrument", "ours",
           "--seed", "1", "--parallel", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*/fuzz.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    results = {r["target"]: r for r in json.loads((tmp_path / "summary.json").read_text())["targets"]}
    for target, min_edges in (("zip", 30), ("sniff", 8)):
        r = results[target]
        assert r["execs"] >= RUNS and not r["findings"], r
        assert r["edges"] >= min_edges, r  # coverage feedback reaches storage.py / image_formats.py


def test_zip_entry_without_a_name_is_a_failed_item_not_a_500(tmp_path):
    """Found by the fuzzer in its first 1,400 runs: an entry whose name is empty made ZipInfo.is_dir() raise
    IndexError (filename[-1]) out of the batch reader, a 500 for the upload."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"\x89PNG\r\n\x1a\n")
        zf.writestr("cell.png", b"\x89PNG\r\n\x1a\n")
    items = storage.build_items([("upload.zip", io.BytesIO(buf.getvalue()))], Settings(batch_inline=True),
                                tmp_path / "staging")
    assert [(i.stored, i.error) for i in items] == [(False, "the entry has no name"), (True, None)]


def test_corrupt_lzma_entry_is_a_failed_item_not_a_500(tmp_path):
    """Found by the fuzzer within 140 runs of `make fuzz`: an LZMA-compressed entry (ZIP method 14) whose
    stream is corrupt raised lzma.LZMAError, which is no OSError, out of the batch reader: a 500."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as zf:
        zf.writestr("cell.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    data = bytearray(buf.getvalue())
    data[30 + len("cell.png") + 4 + 5 + 20] ^= 0xFF  # local header, name, LZMA version + props: into the stream
    items = storage.build_items([("upload.zip", io.BytesIO(bytes(data)))], Settings(batch_inline=True),
                                tmp_path / "staging")
    assert [(i.stored, i.error) for i in items] == [(False, "the entry cannot be read (LZMAError)")]
