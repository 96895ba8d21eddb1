#!/usr/bin/env bash
# Build every HemoVision image without an image registry, inspect them, run one and
# health-check it, then try the compose stack (`make images-offline`; not run by CI or
# `make test`). docs/deployment.md "Building without a registry" has a measured run.
#
#   1. a base image: Debian bookworm (minbase) + python3.11 from Debian packages, made with
#      debootstrap from the mirror apt uses here, imported with `podman import`
#      (kept and reused; HV_REBUILD_BASE=1 makes it again)
#   2. `make image` with podman and build args pointing at that base: PYTHON=/usr/bin/python3.11,
#      uv from PyPI (UV_SOURCE=pypi), python3.11-dev for the C++ extension, the host's CA bundle
#      mounted for the build only (a TLS-intercepting proxy), --network host
#   3. per image: size, TensorFlow inside or not, user, HEALTHCHECK, compilers
#   4. the auth image against the host's PostgreSQL / Redis (a database and Redis db of its own),
#      read-only root, its own network namespace (slirp4netns; the host's 127.0.0.1 is 10.0.2.2
#      inside): migrate, serve, the image's HEALTHCHECK (`podman healthcheck run`) + gRPC health
#      from the host, then stop (SIGTERM, graceful)
#   5. `make compose-up` with the same engine: the exact command and where it stops
#
# Needs root, podman, buildah, debootstrap (installed from Debian when missing).
# Settings: HV_IMAGE_WORK (default /var/tmp/hemovision-build: rootfs, containers.conf, logs),
# HV_DEBIAN_MIRROR, HV_BUILD_CA, HV_CHECK_PORT (host port of the checked container, 55051),
# HV_SKIP_BUILD=1 (inspect/run the images already built), HV_SKIP_COMPOSE=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=${HV_IMAGE_WORK:-/var/tmp/hemovision-build}
BASE=${HV_BASE_IMAGE:-localhost/hemovision-base:bookworm}
TAG=${IMAGE_TAG:-$(sed -n 's/^IMAGE_TAG ?= *//p' Makefile)}
read -r -a TARGETS <<< "${IMAGE_TARGETS:-$(sed -n 's/^IMAGE_TARGETS := *//p' Makefile)}"
CHECK_PORT=${HV_CHECK_PORT:-55051}
PG=${HV_CHECK_POSTGRES:-127.0.0.1:5432}
REDIS_DB=${HV_CHECK_REDIS_DB:-13}
CHECK_DB=hemovision_image_check
CHECK_NAME=hv-image-check-auth
export PGOPTIONS='-c client_min_messages=warning'
mkdir -p "$WORK"
log() { printf '\n== %s\n' "$*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (podman with root storage, debootstrap)"

# ------------------------------------------------------------------ 0. tools
missing=()
for tool in podman buildah debootstrap runc slirp4netns podman-compose; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  log "installing from Debian: ${missing[*]} (+ fuse-overlayfs uidmap)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" fuse-overlayfs uidmap >"$WORK/apt.log" 2>&1 || die "apt-get install failed: $WORK/apt.log"
fi
echo "podman $(podman --version | awk '{print $3}'), buildah $(buildah --version | awk '{print $3}'), $(podman-compose version 2>/dev/null | grep -m1 podman-compose)"

# Engine settings for sandboxes like this one: crun refuses cgroup v1/v2 hybrid mounts
# ("cgroups in hybrid mode not supported"), and podman's default RLIMIT_NOFILE/NPROC
# (1048576 / 4194304) exceed what an unprivileged-resource root may set ("setrlimit
# RLIMIT_NOFILE: Operation not permitted"). runc + the current hard limits work everywhere.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[[ $nofile == unlimited ]] && nofile=1048576
[[ $nproc == unlimited || $nproc -gt 4096 ]] && nproc=4096
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
events_logger = "file"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
# compose files name images as docker does (postgres:15..., tensorflow/serving:...): let podman
# resolve short names on Docker Hub, as docker would (Debian's registries.conf defines no search registry)
printf 'unqualified-search-registries = ["docker.io"]\n' > "$WORK/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
# Without systemd, podman cannot schedule periodic health checks and says so on every run
# ("unable to get systemd connection to add healthchecks"); `podman healthcheck run` runs them.
quiet() { "$@" 2> >(grep -v 'systemd connection' >&2); }

# ------------------------------------------------------------------ 1. base image
mirror=${HV_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(\S*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
mirror=${mirror:-http://deb.debian.org/debian}
if [[ ${HV_REBUILD_BASE:-0} != 1 ]] && podman image exists "$BASE"; then
  log "base $BASE: exists (HV_REBUILD_BASE=1 remakes it)"
else
  log "base $BASE: debootstrap bookworm (minbase) from $mirror"
  rm -rf "$WORK/rootfs"
  start=$SECONDS
  debootstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python3-distutils,python3-lib2to3,python3-pip-whl,python3-setuptools-whl,ca-certificates,libstdc++6,libgomp1 \
    bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed: $WORK/debootstrap.log"
  cat > "$WORK/rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  chroot "$WORK/rootfs" apt-get clean
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/debootstrap"
  tar --numeric-owner -C "$WORK/rootfs" -c . \
    | podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null \
    || die "podman import failed"
  rm -rf "$WORK/rootfs"
  echo "debootstrap + import: $((SECONDS - start)) s"
fi
podman run --rm --network none "$BASE" python3.11 -c 'import sys; print("base python", sys.version.split()[0])'

# ------------------------------------------------------------------ 2. the images
ca=${HV_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
build_args=(--network host
  --build-arg "PYTHON_IMAGE=$BASE" --build-arg PYTHON=/usr/bin/python3.11
  --build-arg UV_SOURCE=pypi --build-arg PYTHON_HEADERS=python3.11-dev)
if [[ -f $ca ]]; then
  build_args+=(-v "$ca:/run/hv-build-ca.pem:ro" --build-arg PIP_CERT=/run/hv-build-ca.pem
    --build-arg SSL_CERT_FILE=/run/hv-build-ca.pem)
fi
echo "+ make image CONTAINER_ENGINE=podman IMAGE_TAG=$TAG IMAGE_BUILD_ARGS=\"${build_args[*]}\""
if [[ ${HV_SKIP_BUILD:-0} == 1 ]]; then
  log "make image: skipped (HV_SKIP_BUILD=1: the images already built)"
else
  log "make image (podman): ${TARGETS[*]}"
  start=$SECONDS
  make --no-print-directory image CONTAINER_ENGINE=podman IMAGE_TAG="$TAG" IMAGE_BUILD_ARGS="${build_args[*]}" \
    >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; die "make image failed: $WORK/build.log"; }
  echo "built in $((SECONDS - start)) s (log: $WORK/build.log)"
fi

# ------------------------------------------------------------------ 3. what is inside
log "images"
printf '%-34s %9s %11s %12s %-70s %s\n' image "size MB" tensorflow user healthcheck compilers
for t in "${TARGETS[@]}"; do
  img=localhost/hemovision-$t:$TAG
  size=$(podman image inspect --format '{{.Size}}' "$img")
  user=$(podman image inspect --format '{{.Config.User}}' "$img")
  health=$(podman image inspect --format '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{else}}-{{end}}' "$img")
  tf=$(quiet podman run --rm --network none "$img" python -c \
    'import importlib.util as u; print("yes" if u.find_spec("tensorflow") else "no")' | tail -1)
  cc=$(quiet podman run --rm --network none "$img" sh -c 'for c in gcc g++ cc c++ cmake make; do command -v $c; done' | tr '\n' ' ')
  printf '%-34s %9s %11s %12s %-70s %s\n' "hemovision-$t:$TAG" "$((size / 1000000))" "$tf" "$user" "${health:0:70}" "${cc:-none}"
done

# ------------------------------------------------------------------ 4. one container, health-checked
log "start hemovision-auth:$TAG and health-check it"
podman rm -f "$CHECK_NAME" >/dev/null 2>&1
psql -h "${PG%:*}" -p "${PG#*:}" -U postgres -qc "DROP DATABASE IF EXISTS $CHECK_DB" >/dev/null \
  && psql -h "${PG%:*}" -p "${PG#*:}" -U postgres -qc "CREATE DATABASE $CHECK_DB" >/dev/null \
  || die "cannot create database $CHECK_DB on $PG"
# the host's loopback is 10.0.2.2 in a slirp4netns namespace with allow_host_loopback
env_args=(-e "HV_DATABASE_URL=postgresql+psycopg2://postgres@10.0.2.2:${PG#*:}/$CHECK_DB"
  -e "HV_REDIS_URL=redis://10.0.2.2:6379/$REDIS_DB" -e HV_AUTH_HOST=0.0.0.0 -e HV_OTEL_EXPORTER=none
  -e HV_AUTH_AUDIT_FORWARD=false)
net=(--network slirp4netns:allow_host_loopback=true)
echo "+ podman run --rm ${net[*]} ${env_args[*]} hemovision-auth:$TAG python -m hemovision_auth migrate"
podman run --rm "${net[@]}" "${env_args[@]}" --read-only --tmpfs /tmp "localhost/hemovision-auth:$TAG" \
  python -m hemovision_auth migrate 2>&1 | tail -3
run=(podman run -d --name "$CHECK_NAME" "${net[@]}" -p "127.0.0.1:$CHECK_PORT:50051" --read-only --tmpfs /tmp
  "${env_args[@]}" "localhost/hemovision-auth:$TAG")
echo "+ ${run[*]}"
quiet "${run[@]}" >/dev/null || die "podman run failed"
healthy=0
for _ in $(seq 60); do
  if podman healthcheck run "$CHECK_NAME" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 1
done
echo "+ podman healthcheck run $CHECK_NAME  ($(podman image inspect --format '{{join .Config.Healthcheck.Test " "}}' "localhost/hemovision-auth:$TAG"))"
podman healthcheck run "$CHECK_NAME"; echo "exit $? ($( ((healthy)) && echo healthy || echo unhealthy))"
echo "+ podman inspect: State.Health.Status=$(podman inspect --format '{{.State.Health.Status}}' "$CHECK_NAME")"
echo "+ podman exec $CHECK_NAME id: $(podman exec "$CHECK_NAME" id)"
if [[ -x .venv/bin/python ]]; then
  echo "+ host: .venv/bin/python deploy/docker/grpc-health.py 127.0.0.1:$CHECK_PORT hemovision.auth.v1.AuthService"
  .venv/bin/python deploy/docker/grpc-health.py "127.0.0.1:$CHECK_PORT" hemovision.auth.v1.AuthService; echo "exit $?"
  .venv/bin/python - "$CHECK_PORT" <<'EOF'
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as ch:
    stub = health_pb2_grpc.HealthStub(ch)
    for name in ("", "hemovision.auth.v1.AuthService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=3)
        print(f"  grpc.health.v1 Check({name!r}) -> {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
EOF
fi
echo "+ podman stop -t 30 $CHECK_NAME"
start=$SECONDS
quiet podman stop -t 30 "$CHECK_NAME" >/dev/null
echo "stopped in $((SECONDS - start)) s, exit code $(podman inspect --format '{{.State.ExitCode}}' "$CHECK_NAME")"
podman logs "$CHECK_NAME" 2>&1 | tail -4 | cut -c1-200
quiet podman rm "$CHECK_NAME" >/dev/null
psql -h "${PG%:*}" -p "${PG#*:}" -U postgres -qc "DROP DATABASE IF EXISTS $CHECK_DB" >/dev/null
((healthy)) || die "the auth container never became healthy"

# ------------------------------------------------------------------ 5. the compose stack
# `make compose-up` is `make image` (done above: rebuilding here would only redo what changed in
# the tree since) + this command, which make runs with COMPOSE=podman-compose here.
if [[ ${HV_SKIP_COMPOSE:-0} != 1 ]]; then
  log "compose: the images of step 2 + PostgreSQL, Redis, tensorflow/serving from Docker Hub"
  cmd=(podman-compose -p hemovision -f docker-compose.yml up -d)
  echo "+ HEMOVISION_TAG=$TAG ${cmd[*]}"
  HEMOVISION_TAG=$TAG timeout 600 "${cmd[@]}" >"$WORK/compose.log" 2>&1
  echo "exit $? (podman-compose 1.0.3 carries on past failed services; log: $WORK/compose.log)"
  grep -E '^Error|^podman run --name=hemovision_(postgres|redis|tf-serving|migrate)_1' "$WORK/compose.log" \
    | grep -v 'no such volume\|no container with name' | cut -c1-240 | head -12
  echo "+ podman ps -a --filter label=io.podman.compose.project=hemovision"
  sleep 10
  podman ps -a --filter label=io.podman.compose.project=hemovision --format '{{.Names}} {{.Status}}' 2>/dev/null | head -20
  echo "+ podman logs hemovision_migrate_1"
  podman logs hemovision_migrate_1 2>&1 | grep -m1 OperationalError | cut -c1-240
  HEMOVISION_TAG=$TAG podman-compose -p hemovision -f docker-compose.yml down -v >/dev/null 2>&1
  podman network rm hemovision_default >/dev/null 2>&1
fi
log "done"
