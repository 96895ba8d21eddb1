#!/usr/bin/env bash
# Fails when the committed generated code differs from what proto/ generates.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
bash scripts/gen_proto.sh "$tmp/src"
if ! diff -r -x '__pycache__' "$tmp/src/hemovision" libs/proto/src/hemovision; then
  echo "generated protobuf code is stale: run 'make proto' and commit" >&2; exit 1
fi
echo "proto: generated code up to date"
