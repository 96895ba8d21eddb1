# syntax=docker/dockerfile:1.7
#
# One image per HemoVision service, all from this file: `--target` picks the image.
#
#   target      image                 packages (uv sync --package)             runs
#   gateway     hemovision-gateway    hemovision-gateway                       gateway + batch worker (Celery -Q batches)
#   auth        hemovision-auth       hemovision-auth                          auth
#   history     hemovision-history    hemovision-history                       history + retention purge
#   reports     hemovision-reports    hemovision-reports                       reports
#   preprocess  hemovision-preprocess hemovision-preprocess                    preprocess (C++ _core)
#   inference   hemovision-inference  hemovision-inference                     inference (TensorFlow protos)
#   training    hemovision-training   hemovision-training                      training + training worker (TensorFlow)
#   migrate     hemovision-migrate    hemovision-auth, -history, -training     one-off migrations + register-existing
#
# Each image holds only its own package's locked dependencies: gateway, auth, history,
# reports and preprocess carry no TensorFlow (deploy/checks verify it against uv.lock).
# The model server is tensorflow/serving (docker-compose.yml, the inference pod's sidecar).
#
# Build (a registry reachable: python slim base, uv from its ghcr image):
#   make image                                           # every target, docker or podman
#   docker build --target auth -t hemovision-auth:0.1.0 .
# Offline (a Debian base made with debootstrap, uv from PyPI): scripts/build_images_offline.sh
#   podman build --format docker --network host --target auth \
#     --build-arg PYTHON_IMAGE=localhost/hemovision-base:bookworm --build-arg PYTHON=/usr/bin/python3.11 \
#     --build-arg UV_SOURCE=pypi --build-arg PYTHON_HEADERS=python3.11-dev -t hemovision-auth:0.1.0 .
# See docs/deployment.md.

# The base of every stage: a Debian bookworm with CPython 3.11 at ${PYTHON}.
# fully qualified: podman on Debian has no unqualified-search registry
ARG PYTHON_IMAGE=docker.io/library/python:3.11.13-slim-bookworm
ARG PYTHON=/usr/local/bin/python3.11
# Where uv comes from: `image` (its pinned ghcr image) or `pypi` (pip install uv==UV_VERSION).
ARG UV_SOURCE=image
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
ARG UV_VERSION=0.13.9

# --- uv: /uv and /uvx, from its image or from PyPI -------------------------------------
FROM ${UV_IMAGE} AS uv-image

FROM ${PYTHON_IMAGE} AS uv-pypi
ARG PYTHON
ARG UV_VERSION
# a build-time CA bundle (a TLS-intercepting proxy), passed as a build arg, never stored
ARG PIP_CERT
RUN "${PYTHON}" -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
 && cp /opt/uv/bin/uv /uv \
 && cp /opt/uv/bin/uvx /uvx

# hadolint ignore=DL3006
FROM uv-${UV_SOURCE} AS uv

# --- manifests: only the workspace's pyproject.toml files + uv.lock ------------------
# Copying the whole tree here and keeping only the manifests means the dependency layers
# below are rebuilt only when a manifest or the lock changes, not on every source edit,
# and a new workspace member needs no Dockerfile change.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
 && cp pyproject.toml uv.lock /manifests/ \
 && find libs services -name pyproject.toml -exec cp --parents {} /manifests/ \;

# --- builder: compilers, uv, the manifests ---------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG PYTHON
# python:*-slim has the CPython headers; a Debian python3.11 base needs PYTHON_HEADERS=python3.11-dev
ARG PYTHON_HEADERS=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=SC2086
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake ${PYTHON_HEADERS} \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /uvx /usr/local/bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=${PYTHON} \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY --from=manifests /manifests/ ./

# --- one virtual environment per image -------------------------------------------------
# Each: (1) the package's third-party dependencies exactly as locked (a layer cached until
# the lock changes), (2) the sources and the workspace members it needs, installed as real
# packages (not editable links into /src; hemovision-pixels' C++ _core is built here with
# scikit-build-core + CMake + g++), (3) the import that fails the build, not the deployment.
# SSL_CERT_FILE: a build-time CA bundle for uv behind a TLS-intercepting proxy (build arg only).
FROM builder AS venv-gateway
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-gateway
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-gateway \
 && /opt/venv/bin/python -c "import hemovision_gateway.app, hemovision_gateway.batches.worker"

FROM builder AS venv-auth
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-auth
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-auth \
 && /opt/venv/bin/python -c "import hemovision_auth"

FROM builder AS venv-history
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-history
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-history \
 && /opt/venv/bin/python -c "import hemovision_history"

FROM builder AS venv-reports
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-reports
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-reports \
 && /opt/venv/bin/python -c "import hemovision_reports"

FROM builder AS venv-preprocess
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-preprocess
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-preprocess \
 && /opt/venv/bin/python -c "import hemovision_pixels, hemovision_preprocess"

FROM builder AS venv-inference
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-inference
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-inference \
 && /opt/venv/bin/python -c "import hemovision_inference"

FROM builder AS venv-training
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package hemovision-training
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package hemovision-training \
 && /opt/venv/bin/python -c "import hemovision_pixels, hemovision_training"

FROM builder AS venv-migrate
ARG SSL_CERT_FILE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace \
      --package hemovision-auth --package hemovision-history --package hemovision-training
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable \
      --package hemovision-auth --package hemovision-history --package hemovision-training \
 && /opt/venv/bin/python -c "import hemovision_auth, hemovision_history, hemovision_training"

# --- runtime: the base of every image: no compilers, non-root --------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ARG GID=10001
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "${GID}" hemovision \
 && useradd --system --uid "${UID}" --gid hemovision --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin hemovision \
 && mkdir -p /app /models /var/lib/hemovision/blobs /var/lib/hemovision/uploads \
 && chown -R hemovision:hemovision /app /var/lib/hemovision

COPY --chmod=0755 deploy/docker/grpc-health.py /usr/local/bin/hv-grpc-health

# Writable paths are /tmp (an emptyDir / tmpfs when the root filesystem is read-only),
# /var/lib/hemovision (blobs, batch uploads) and /models (training only).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/keras \
    TF_CPP_MIN_LOG_LEVEL=1 \
    HV_MODEL_BASE=/models \
    HV_MODEL_NAME=hemovision \
    HV_HISTORY_BLOB_ROOT=/var/lib/hemovision/blobs \
    HV_GATEWAY_UPLOAD_DIR=/var/lib/hemovision/uploads

WORKDIR /app
USER ${UID}:${GID}

# --- the images --------------------------------------------------------------------------
# HEALTHCHECK: gRPC health (hv-grpc-health: grpc.health.v1 Check, exit 0 only on SERVING)
# for the gRPC services, GET /readyz for the gateway. docker-compose.yml and Kubernetes
# set their own; podman keeps a HEALTHCHECK only with `--format docker`.

FROM runtime AS gateway
COPY --from=venv-gateway /opt/venv /opt/venv
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=3).status == 200 else 1)"]
CMD ["python", "-m", "hemovision_gateway", "serve"]

FROM runtime AS auth
COPY --from=venv-auth /opt/venv /opt/venv
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50051", "hemovision.auth.v1.AuthService"]
CMD ["python", "-m", "hemovision_auth", "serve"]

FROM runtime AS history
COPY --from=venv-history /opt/venv /opt/venv
EXPOSE 50054
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50054", "hemovision.history.v1.HistoryService"]
CMD ["python", "-m", "hemovision_history", "serve"]

FROM runtime AS reports
COPY --from=venv-reports /opt/venv /opt/venv
EXPOSE 50055
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50055", "hemovision.reports.v1.ReportsService"]
CMD ["python", "-m", "hemovision_reports", "serve"]

FROM runtime AS preprocess
COPY --from=venv-preprocess /opt/venv /opt/venv
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50052", "hemovision.preprocess.v1.PreprocessService"]
CMD ["python", "-m", "hemovision_preprocess", "serve"]

FROM runtime AS inference
COPY --from=venv-inference /opt/venv /opt/venv
EXPOSE 50053
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50053", "hemovision.inference.v1.InferenceService"]
CMD ["python", "-m", "hemovision_inference", "serve"]

FROM runtime AS training
COPY --from=venv-training /opt/venv /opt/venv
EXPOSE 50056
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
  CMD ["hv-grpc-health", "127.0.0.1:50056", "hemovision.training.v1.TrainingService"]
CMD ["python", "-m", "hemovision_training", "serve"]

# One-off (compose `migrate`, the Kubernetes Job): no server, so no health check.
FROM runtime AS migrate
COPY --from=venv-migrate /opt/venv /opt/venv
HEALTHCHECK NONE
CMD ["sh", "-c", "python -m hemovision_auth migrate && python -m hemovision_history migrate && python -m hemovision_training migrate && python -m hemovision_training register-existing"]
