# HemoVision — one entry point for every routine task. `make help` lists them.
SHELL := /bin/bash
PY := .venv/bin/python
UV ?= uv
PYTEST := $(PY) -m pytest

.PHONY: image compose-up help install proto proto-check up down test test-unit test-e2e test-browser lint \
        bench bench-preprocess bench-serving bench-model bench-shift bench-adapt bench-reliability bench-tracing bench-ood fuzz sanitize-preprocess validate-deploy images-offline clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

install: ## create .venv and install every service and lib (builds the C++ extension)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv==0.13.9
	$(UV) sync --all-packages --frozen

proto: ## regenerate libs/proto from proto/
	bash scripts/gen_proto.sh

proto-check: ## fail if the committed generated code is stale
	bash scripts/check_proto.sh

up: ## run the whole system locally (Ctrl-C stops it)
	.venv/bin/hemovision up

down: ## stop a system started by `make up` from another shell
	.venv/bin/hemovision down

test: proto-check ## every test: unit, integration (real PostgreSQL/Redis/model server) and end-to-end
	$(PYTEST) libs services tests

test-unit: ## the fast tests only
	$(PYTEST) -m "not slow and not e2e" libs services

test-e2e: ## the end-to-end tests (start the system as `make up` does)
	$(PYTEST) tests/e2e

test-browser: ## the browser tests (Chromium): the UI on fake peers, then on the real system
	$(PYTEST) services/gateway/tests/browser tests/e2e/test_browser_on_system.py

# mypy covers the libraries every service builds on; services join as they are annotated.
MYPY_PATHS := $(filter-out libs/proto/src,$(wildcard libs/*/src))

lint: ## ruff over the repository, mypy over libs/ (settings in pyproject.toml; CI runs it)
	.venv/bin/ruff check .
	.venv/bin/mypy $(MYPY_PATHS)

bench: bench-preprocess bench-model bench-serving ## every benchmark

bench-preprocess: ## C++ vs OpenCV vs NumPy/scikit-image preprocessing
	$(PY) bench/preprocess/bench_preprocess.py --n 1000 --json bench/results/preprocess.json

bench-model: ## the bare SavedModel: latency and throughput
	$(PY) bench/model/bench_model.py

bench-serving: ## bare model vs model server vs inference vs gateway, and during a swap
	$(PY) bench/serving/bench_serving.py

bench-shift: ## every model side by side on PBC val/test under seeded lab shifts + external_dev (docs/model_card.md)
	$(PY) bench/shift/bench_shift.py --json bench/results/shift.json

bench-adapt: ## "adapt to our lab": external_dev accuracy before/after adapting on 20/50/80 reviewed cells, time, PBC test (docs/training.md)
	$(PY) bench/adapt/bench_adapt.py --json bench/results/adapt.json --markdown bench/results/adapt.md

bench-reliability: ## load at c=200 vs c=32 and faults under load (model server kill -9, PostgreSQL restart, Redis down) on its own stack (docs/reliability.md; --quick / --soak via ARGS)
	$(PY) bench/reliability/bench_reliability.py $(ARGS)

bench-tracing: ## what always-on tracing costs: one gRPC hop and one upload through the gateway, tracing on vs off (docs/operations.md "Tracing")
	$(PY) bench/tracing/hop.py && $(PY) bench/tracing/overhead.py

bench-ood: ## needs_review OOD evaluation (far/near OOD AUROC, false flags on the PBC test split)
	$(PY) bench/ood/eval_ood.py

# Coverage-guided fuzzing (atheris): FUZZ_SECONDS per target; findings under test-artifacts/fuzz/.
# FUZZ_ASAN=1: the pixels target on the ASan + UBSan build of the C++ chain; extra flags via ARGS.
FUZZ_SECONDS ?= 120
fuzz: ## fuzz the decoders (image decode + C++ chain, batch ZIP reader, format sniffing) for FUZZ_SECONDS (120) each; FUZZ_ASAN=1 for ASan/UBSan (docs/reliability.md; not CI)
	$(PY) bench/fuzz/run_fuzz.py --seconds $(FUZZ_SECONDS) $(if $(FUZZ_ASAN),--asan) $(ARGS)

sanitize-preprocess: ## build the C++ extension with ASan+UBSan and run the property tests on it
	bash services/preprocess/core/scripts/sanitize.sh

validate-deploy: ## validate docker-compose.yml and the Kubernetes manifests offline
	bash scripts/validate_deploy.sh

# Container images (issue 18): one per service, all from the one Dockerfile (its --target);
# docs/deployment.md "The images". IMAGE_TAG is the tag everywhere (compose's HEMOVISION_TAG,
# the kustomizations' newTag: deploy/checks hold them to it).
IMAGE_TAG ?= 0.1.0
IMAGE_TARGETS := gateway auth history reports preprocess inference training migrate
# extra `build` flags, e.g. the offline base (scripts/build_images_offline.sh sets them)
IMAGE_BUILD_ARGS ?=
# A docker whose daemon answers, else podman (issue 18: whichever engine is found).
CONTAINER_ENGINE ?= $(shell (docker info >/dev/null 2>&1 && echo docker) || command -v podman 2>/dev/null)
# podman keeps a HEALTHCHECK only in the docker image format (OCI has no health check)
ENGINE_BUILD_FLAGS = $(if $(findstring podman,$(CONTAINER_ENGINE)),--format docker)
# docker compose with a live daemon, else podman compose (podman >= 4.7), else podman-compose
COMPOSE ?= $(shell (docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 && echo docker compose) \
  || (podman compose version >/dev/null 2>&1 && echo podman compose) || command -v podman-compose 2>/dev/null)

image: ## build every service's image (hemovision-<target>:IMAGE_TAG) with docker or podman
	@test -n "$(CONTAINER_ENGINE)" || { echo "no container engine: start the docker daemon or install podman" >&2; exit 2; }
	set -e; for target in $(IMAGE_TARGETS); do \
	  echo "== hemovision-$$target:$(IMAGE_TAG)"; \
	  $(CONTAINER_ENGINE) build $(ENGINE_BUILD_FLAGS) $(IMAGE_BUILD_ARGS) --target $$target \
	    -t hemovision-$$target:$(IMAGE_TAG) . ; \
	done

compose-up: image ## the whole system in containers with real tensorflow/serving (docker or podman compose)
	@test -n "$(COMPOSE)" || { echo "no compose: docker compose with a running daemon, podman compose or podman-compose" >&2; exit 2; }
	HEMOVISION_TAG=$(IMAGE_TAG) $(COMPOSE) up -d

images-offline: ## build every image offline (debootstrap base, podman), inspect them, start + health-check one, try compose (not CI)
	bash scripts/build_images_offline.sh

clean: ## remove build outputs and local state (var/)
	rm -rf var build services/preprocess/core/build .pytest_cache
