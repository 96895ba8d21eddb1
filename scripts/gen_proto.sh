#!/usr/bin/env bash
# Regenerates libs/proto/src/hemovision from proto/ (proto path = import path).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-libs/proto/src}")
py=${PYTHON:-$PWD/.venv/bin/python}
find "$out/hemovision" -name '*_pb2*' -delete 2>/dev/null || true
mapfile -t files < <(cd proto && find hemovision -name '*.proto' | sort)
(cd proto && "$py" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" \
    --grpc_python_out="$out" "${files[@]}")
