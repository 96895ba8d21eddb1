#!/usr/bin/env bash
# Build _core with AddressSanitizer + UndefinedBehaviorSanitizer into build/sanitize
# and run the test suite (property tests included) against that build.
#
#   services/preprocess/core/scripts/sanitize.sh            # all tests
#   services/preprocess/core/scripts/sanitize.sh -k clahe   # extra args go to pytest
#
# Exits non-zero on any test failure or any sanitizer report: UBSan is built with
# -fno-sanitize-recover=all and ASan aborts on the first error, and the log is
# scanned for reports as a second guard. Python itself is not instrumented, so
# libasan is LD_PRELOADed and leak checking is off (CPython's interned objects
# would drown real reports); PYTHONMALLOC=malloc routes Python's allocations
# through ASan so overruns into NumPy buffers are caught.
set -euo pipefail

core="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$core/../../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
build="$core/build/sanitize"
stage="$build/stage"

cmake -S "$core" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Debug \
  -DHEMOVISION_SANITIZE=ON \
  -DPython_EXECUTABLE="$py" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"

# Stage the Python package next to the sanitized extension.
rm -rf "$stage"
mkdir -p "$stage"
cp -r "$core/src/hemovision_pixels" "$stage/"
cp "$build"/_core*.so "$stage/hemovision_pixels/"

libasan="$(g++ -print-file-name=libasan.so)"
libubsan="$(g++ -print-file-name=libubsan.so)"
log="$build/pytest.log"

set +e
LD_PRELOAD="$libasan $libubsan" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
PYTHONMALLOC=malloc \
HV_SANITIZE_STAGE="$stage" \
"$py" - "$core/tests" "$@" <<'PY' 2>&1 | tee "$log"
import os, sys
# The editable install's import hook would hand out the optimised _core; drop it
# and put the staged, sanitized package first.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "skbuild" not in type(f).__module__.lower()]
sys.path.insert(0, os.environ["HV_SANITIZE_STAGE"])
import hemovision_pixels._core as core
assert core.__file__.startswith(os.environ["HV_SANITIZE_STAGE"]), core.__file__
print("sanitized _core:", core.__file__, flush=True)
import pytest
sys.exit(pytest.main([sys.argv[1], "-q", "-p", "no:cacheprovider", *sys.argv[2:]]))
PY
status=${PIPESTATUS[0]}
set -e

if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$log"; then
  echo "sanitize.sh: sanitizer report found (see $log)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize.sh: tests failed under ASan/UBSan (exit $status)" >&2
  exit "$status"
fi
echo "sanitize.sh: clean (ASan + UBSan, $(grep -Eo '[0-9]+ passed' "$log" | tail -1))"
