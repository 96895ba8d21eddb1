# syntax=docker/dockerfile:1.7
#
# One image for every HemoVision Python process; the command picks the process:
#   python -m hemovision_<svc> serve            gateway, auth, preprocess, inference, history, reports, training
#   python -m hemovision_<svc> migrate          auth, history, training (one-off)
#   python -m hemovision_training register-existing
#   celery -A hemovision_gateway.batches.worker worker -Q batches
#   python -m hemovision_training worker
# Build:  docker build -t hemovision:0.1.0 .
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- manifests: only the workspace's pyproject.toml files + uv.lock ------------------
# Copying the whole tree here and keeping only the manifests means the dependency layer
# below is rebuilt only when a manifest or the lock changes, not on every source edit,
# and a new workspace member needs no Dockerfile change.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
 && cp pyproject.toml uv.lock /manifests/ \
 && find libs services -name pyproject.toml -exec cp --parents {} /manifests/ \;

# --- builder: compilers, uv, the locked dependencies, the C++ extension ----------------
FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /uvx /usr/local/bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src

# 1. third-party dependencies exactly as locked (cached layer)
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --all-packages --no-dev --no-install-workspace

# 2. the workspace members, installed as real packages (not editable links into /src),
#    which builds hemovision-pixels' _core with scikit-build-core + CMake + g++
COPY libs/ libs/
COPY services/ services/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --all-packages --no-dev --no-editable

# 3. fail the build, not the deployment, when a process cannot import
RUN /opt/venv/bin/python -c "import hemovision_pixels, hemovision_gateway, hemovision_auth, \
hemovision_preprocess, hemovision_inference, hemovision_model_server, hemovision_history, hemovision_reports, hemovision_training"

# --- runtime: slim, no compilers, non-root -------------------------------------------
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

COPY --from=builder /opt/venv /opt/venv
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
EXPOSE 8000 50051 50052 50053 50054 50055 50056
# Overridden per service by docker-compose / the Kubernetes Deployments.
CMD ["python", "-m", "hemovision_gateway", "serve"]
