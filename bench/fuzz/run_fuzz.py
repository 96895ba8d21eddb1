"""`make fuzz`: every fuzz target of bench/fuzz/fuzz_decoders.py for a fixed budget, then a summary.

    python bench/fuzz/run_fuzz.py                       # FUZZ_SECONDS (120) per target, all targets
    python bench/fuzz/run_fuzz.py --seconds 30 --targets zip sniff
    python bench/fuzz/run_fuzz.py --asan                # pixels on the ASan + UBSan build of _core
    python bench/fuzz/run_fuzz.py --runs 2000 --instrument ours --out DIR   # CI (test_fuzz_harness.py)

Per target, under --out (test-artifacts/fuzz/; pixels-asan/ for --asan): <target>/corpus (the grown
corpus, kept between runs: libFuzzer starts from it and the generated seeds), <target>/crash-* /
timeout-* / oom-* (findings: the input that broke the contract; replay with `fuzz_decoders.py --replay
<target> FILE`), <target>/fuzz.log (libFuzzer's output); summary.json for all. Exit status 1 when a
target has a finding or fails to run.

--asan builds _core with AddressSanitizer + UndefinedBehaviorSanitizer (the flags of
services/preprocess/core/scripts/sanitize.sh, into build/sanitize), stages it, and runs the pixels target
with atheris' own libFuzzer LD_PRELOADed ahead of libasan/libubsan: libasan defines weak stubs of the
__sanitizer_cov_* hooks atheris reports Python coverage through, and whichever library comes first in the
process wins (libasan first = no coverage feedback, the fuzzer runs blind).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "fuzz_decoders.py"
CORE = REPO / "services" / "preprocess" / "core"
TARGETS = ("pixels", "zip", "sniff")
FINDING = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+$")
STATUS = re.compile(r"^#(\d+)\s+(?:DONE|NEW|REDUCE|pulse|INITED|RELOAD)\s+cov: (\d+) ft: (\d+) corp: (\d+)")
STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


def gxx_lib(name: str) -> str:
    out = subprocess.run(["g++", f"-print-file-name={name}"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def build_sanitized(py: str, jobs: int) -> Path:
    """_core with ASan + UBSan, staged as a hemovision_pixels package (sanitize.sh's layout)."""
    build = CORE / "build" / "sanitize"
    cmakedir = subprocess.run([py, "-m", "pybind11", "--cmakedir"], check=True, capture_output=True,
                              text=True).stdout.strip()
    subprocess.run(["cmake", "-S", str(CORE), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Debug",
                    "-DHEMOVISION_SANITIZE=ON", f"-DPython_EXECUTABLE={py}", f"-Dpybind11_DIR={cmakedir}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "-j", str(jobs)], check=True)
    stage = build / "fuzz-stage"
    subprocess.run(["rm", "-rf", str(stage)], check=True)
    (stage / "hemovision_pixels").mkdir(parents=True)
    subprocess.run(f"cp -r '{CORE}/src/hemovision_pixels/.' '{stage}/hemovision_pixels/' && "
                   f"cp '{build}'/_core*.so '{stage}/hemovision_pixels/'", shell=True, check=True)
    return stage


def asan_env(py: str, stage: Path) -> dict[str, str]:
    libfuzzer = subprocess.run([py, "-c", "import atheris, glob, os; print(glob.glob(os.path.join("
                                "os.path.dirname(atheris.__file__), 'core_with_libfuzzer*.so'))[0])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    return {
        "LD_PRELOAD": f"{libfuzzer} {gxx_lib('libasan.so')} {gxx_lib('libubsan.so')}",
        # verify_asan_link_order=0: libasan is not first in LD_PRELOAD (see the module docstring).
        "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0:abort_on_error=1:halt_on_error=1:"
                        "strict_string_checks=1:detect_stack_use_after_return=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONMALLOC": "malloc",  # Python's allocations through ASan, so overruns into NumPy buffers are caught
        "HV_SANITIZE_STAGE": str(stage),
    }


def parse_log(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in text.splitlines():
        if m := STATUS.match(line):
            out.update(execs=int(m[1]), edges=int(m[2]), features=int(m[3]), corpus=int(m[4]))
        elif m := STAT.match(line):
            out[m[1]] = int(m[2])
    # What broke, in one line: the Python exception, the sanitizer's or libFuzzer's headline.
    for pattern in (r"^\s*=== Uncaught Python exception: ===\n(.+)$", r"^(.*ERROR: AddressSanitizer.*)$",
                    r"^(.*runtime error:.*)$", r"^(==\d+== ERROR: libFuzzer:.*)$", r"^(SUMMARY: .*)$"):
        if m := re.search(pattern, text, re.MULTILINE):
            out["what"] = m[1].strip()
            break
    if "execs" in out and "number_of_executed_units" in out:
        out["execs"] = out["number_of_executed_units"]
    return out


def run_target(target: str, args: argparse.Namespace, py: str, env: dict[str, str],
               label: str) -> dict[str, object]:
    tdir = args.out / label  # pixels-asan: its own corpus and findings beside the plain build's
    corpus, seeds = tdir / "corpus", tdir / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rm", "-rf", str(seeds)], check=True)
    before = {p.name for p in tdir.iterdir() if FINDING.match(p.name)}
    budget = [f"-runs={args.runs}"] if args.runs else [f"-max_total_time={args.seconds}"]
    cmd = [py, str(HARNESS), target, "--write-seeds", str(seeds), str(corpus), str(seeds), *budget,
           f"-timeout={args.timeout}",
           f"-rss_limit_mb={args.rss_limit_mb}", f"-max_len={args.max_len}", "-print_final_stats=1",
           f"-artifact_prefix={tdir}/", f"-seed={args.seed}"]
    log = tdir / "fuzz.log"
    start = time.monotonic()
    with log.open("w") as fh:
        try:
            rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=(args.seconds if not args.runs else 0) + args.startup_s).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    wall = time.monotonic() - start
    text = log.read_text(errors="replace")
    found = sorted({p.name for p in tdir.iterdir() if FINDING.match(p.name)} - before)
    result = {"target": target, "label": label, "rc": rc, "wall_s": round(wall, 1),
              "findings": [str(tdir / f) for f in found],
              **parse_log(text)}
    if rc == -1:
        result["what"] = f"the run did not finish within {args.seconds + args.startup_s} s"
    result["execs_per_s"] = result.get("average_exec_per_sec")
    result["ok"] = rc == 0 and not found
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "120")),
                    help="libFuzzer -max_total_time per target (env FUZZ_SECONDS; default 120)")
    ap.add_argument("--runs", type=int, default=0, help="a number of executions instead of a time budget")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--asan", action="store_true", help="pixels on the ASan + UBSan build of the C++ chain")
    ap.add_argument("--asan-stage", type=Path, help="--asan with this staged build (sanitize.sh's), no build")
    ap.add_argument("--parallel", action="store_true", help="the targets side by side (the CI smoke run)")
    ap.add_argument("--instrument", choices=("all", "ours"), default="all",
                    help="instrument Pillow, pydicom and zipfile too (all) or only hemovision_* (ours: fast start)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it is a hang")
    ap.add_argument("--rss-limit-mb", type=int, default=3072, help="a memory blow-up beyond this is a finding")
    ap.add_argument("--max-len", type=int, default=65536, help="the largest input libFuzzer makes")
    ap.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (0: time-based)")
    ap.add_argument("--startup-s", type=int, default=300, help="allowance for start-up beyond the budget")
    ap.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "fuzz")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2")))
    args = ap.parse_args()
    args.out = args.out.resolve()
    py = sys.executable

    base_env = {**os.environ, "HV_FUZZ_INSTRUMENT": args.instrument, "PYTHONWARNINGS": "ignore"}
    sanitized_env = None
    if (args.asan or args.asan_stage) and "pixels" in args.targets:
        stage = args.asan_stage.resolve() if args.asan_stage else build_sanitized(py, args.jobs)
        sanitized_env = {**base_env, **asan_env(py, stage)}
    # Only the pixels target runs under the sanitizers (the C++ chain); the others are pure Python.
    plain_env = {k: v for k, v in base_env.items()
                 if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC", "HV_SANITIZE_STAGE")}

    def one(target: str) -> dict[str, object]:
        asan = sanitized_env is not None and target == "pixels"
        r = run_target(target, args, py, sanitized_env if asan else plain_env, f"{target}-asan" if asan else target)
        r["asan"] = asan
        return r

    if args.parallel:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(args.targets)) as pool:
            results = list(pool.map(one, args.targets))
    else:
        results = [one(t) for t in args.targets]
    for r in results:
        print(f"fuzz {r['target']:6s}{' (ASan+UBSan)' if r['asan'] else ''}: {r.get('execs', 0):>9,} execs "
              f"{r.get('execs_per_s') or 0:>6} exec/s  {r.get('edges', 0):>5} edges  {r.get('features', 0):>6} "
              f"features  corpus {r.get('corpus', 0):>4}  findings {len(r['findings'])}  rc {r['rc']}  "
              f"({r['wall_s']} s)", flush=True)
        for f in r["findings"]:
            print(f"    finding: {f}\n      {r.get('what', '')}", flush=True)
        if r["rc"] != 0 and not r["findings"]:
            log = args.out / str(r["label"]) / "fuzz.log"
            print(f"    failed to run: {r.get('what', f'see {log}')}", flush=True)

    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
                   f"Python {platform.python_version()}",
        "budget": {"seconds": None if args.runs else args.seconds, "runs": args.runs or None,
                   "timeout_s": args.timeout, "rss_limit_mb": args.rss_limit_mb, "max_len": args.max_len,
                   "instrument": args.instrument},
        "targets": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    bad = [r["target"] for r in results if not r["ok"]]
    print(f"fuzz: {'findings or failures in ' + ', '.join(bad) if bad else 'no findings'} "
          f"(summary: {args.out / 'summary.json'})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
