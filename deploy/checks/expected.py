"""What the deployment files must say, from one place.

The service topology (names, ports, health names, who calls whom) is hemovision_contracts'
topology.py, loaded by path: these checks run in their own tool venv, without the workspace.
The rest are deployment facts the topology does not hold.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_topology():
    path = ROOT / "libs" / "contracts" / "src" / "hemovision_contracts" / "topology.py"
    spec = importlib.util.spec_from_file_location("hemovision_topology", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


topology = _load_topology()
SERVERS = topology.SERVERS
# The HemoVision gRPC servers; the model server is tensorflow/serving (its own compose service,
# a sidecar of inference in Kubernetes), the gateway is HTTP.
PORTS = {name: SERVERS[name].port for name in topology.HEMOVISION_GRPC_SERVICES}
HEALTH_NAMES = {name: SERVERS[name].health_service for name in PORTS}
GATEWAY_PORT = SERVERS["gateway"].port
MODEL_SERVER_GRPC = SERVERS["model-server"].port
APP_SERVICES = [*PORTS, "gateway"]
WORKERS = ["gateway-worker", "training-worker"]
TF_SERVING_FLAGS = [
    "--model_config_file=",
    "--enable_batching",
    "--batching_parameters_file=",
    "--file_system_poll_wait_seconds=1",
]
MIGRATE_STEPS = [
    "hemovision_auth migrate",
    "hemovision_history migrate",
    "hemovision_training migrate",
    "hemovision_training register-existing",
]
# Secrets the Kubernetes pods read; dev renders placeholders, base/prod expect them to exist.
EXTERNAL_SECRETS = {
    "hemovision-database",
    "hemovision-auth-database",
    "hemovision-history-database",
    "hemovision-training-database",
    "hemovision-audit-retention",
    "hemovision-redis",
    "hemovision-auth",
    "hemovision-service-credential",
    "hemovision-blobstore",
}


# Mutual TLS in Kubernetes (decision 44; deploy/k8s/components/mtls): overlays that must render
# it, the settings and the file each names in a cert-manager Secret, and who needs a certificate.
MTLS_OVERLAYS = ("prod",)
TLS_ENV = {"HV_TLS_CERT_FILE": "tls.crt", "HV_TLS_KEY_FILE": "tls.key", "HV_TLS_CA_FILE": "ca.crt"}
HEALTH_PROBE_COMMAND = "hv-grpc-health"
# gRPC clients: every server that calls a peer, and every worker whose settings' server does
# (a worker reads that server's peer addresses). With the servers: the workloads that need one.
GRPC_CLIENTS = [*(s.name for s in SERVERS.values() if s.all_peers),
                *(w.name for w in topology.WORKERS.values() if SERVERS[w.settings_of].all_peers)]
MTLS_WORKLOADS = list(dict.fromkeys([*PORTS, *GRPC_CLIENTS]))
# The model server is inference's tensorflow/serving sidecar: it serves with inference's certificate.
SERVED_BY = {**{name: name for name in PORTS}, "model-server": "inference"}


def peer_host(peer: str, model_server_host: str) -> str:
    """The host a peer address names: the peer's own compose service / Kubernetes Service,
    except the model server (tf-serving in compose, the 127.0.0.1 sidecar in Kubernetes)."""
    return model_server_host if peer == "model-server" else peer


def check_peers(r, env: dict, model_server_host: str) -> None:
    """Every edge of the topology has its HV_<SVC>_<PEER>_ADDR on the peer's port, and no
    address names an edge the topology does not have."""
    expected = {}
    for server in SERVERS.values():
        for peer in server.all_peers:
            expected[topology.addr_env(server.name, peer)] = f"{peer_host(peer, model_server_host)}:{SERVERS[peer].port}"
    for key, want in expected.items():
        value = str(env.get(key, ""))
        r.check(value.removeprefix("dns:///") == want, f"{key}={value!r}: the topology wants {want}")
    for key in env:
        if key.endswith("_ADDR"):
            r.check(key in expected, f"{key}: not an edge of hemovision_contracts.topology")


def tf_serving_base_path() -> str:
    """base_path of the hemovision model in deploy/tf-serving/models.config."""
    text = (ROOT / "deploy" / "tf-serving" / "models.config").read_text()
    m = re.search(r'name:\s*"hemovision"\s*base_path:\s*"([^"]+)"', text)
    return m.group(1) if m else ""


def image_pinned(image: str) -> bool:
    """A tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest") and "${" not in last


# --------------------------------------------------------------------------- images
# One image per service, each a target of the one Dockerfile: target -> the workspace packages
# its virtual environment installs (`uv sync --frozen --no-dev --no-editable --package ...`).
IMAGES = {
    "gateway": ["hemovision-gateway"],
    "auth": ["hemovision-auth"],
    "history": ["hemovision-history"],
    "reports": ["hemovision-reports"],
    "preprocess": ["hemovision-preprocess"],
    "inference": ["hemovision-inference"],
    "training": ["hemovision-training"],
    "migrate": ["hemovision-auth", "hemovision-history", "hemovision-training"],
}
# Images whose locked dependencies must not contain TensorFlow (only inference, training and the
# migrations, which run training's commands, need it).
NO_TENSORFLOW = ["gateway", "auth", "history", "reports", "preprocess"]
# One-off images: no server, so `HEALTHCHECK NONE` is allowed.
ONE_OFF_IMAGES = ["migrate"]
# Which image each compose service / Kubernetes workload runs (keyed by compose service,
# Deployment, Job or CronJob name).
WORKLOAD_IMAGES = {
    "gateway": "gateway",
    "gateway-worker": "gateway",
    "auth": "auth",
    "history": "history",
    "history-retention": "history",
    "reports": "reports",
    "preprocess": "preprocess",
    "inference": "inference",
    "training": "training",
    "training-worker": "training",
    "migrate": "migrate",
    "hemovision-migrate": "migrate",
}


def image_name(target: str) -> str:
    return f"hemovision-{target}"


def image_tag() -> str:
    """The one tag of every image: the Makefile's `IMAGE_TAG ?= ...`."""
    m = re.search(r"^IMAGE_TAG \?= *(\S+)", (ROOT / "Makefile").read_text(), re.M)
    return m.group(1) if m else ""


def makefile_image_targets() -> list[str]:
    m = re.search(r"^IMAGE_TARGETS := *(.+)$", (ROOT / "Makefile").read_text(), re.M)
    return m.group(1).split() if m else []


def split_image(ref: str) -> tuple[str, str]:
    """(repository's last path component, tag or digest) of an image reference."""
    repo, digest = ref.split("@", 1) if "@" in ref else (ref, "")
    last = repo.rsplit("/", 1)[-1]
    name, _, tag = last.partition(":")
    return name, digest or tag


def locked_closure(packages: list[str], lock_path: Path | None = None) -> set[str]:
    """Every package `uv sync --no-dev --package P...` installs, from uv.lock: the packages'
    dependencies (with the extras they ask for), transitively; dev groups are not followed."""
    import tomllib

    lock = tomllib.loads((lock_path or ROOT / "uv.lock").read_text())
    by_name = {p["name"]: p for p in lock.get("package", [])}
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(p, ()) for p in packages]
    while todo:
        name, extras = todo.pop()
        key = name if not extras else f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        pkg = by_name.get(name)
        if pkg is None:
            continue
        deps = list(pkg.get("dependencies", []))
        for extra in extras:
            deps += pkg.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            todo.append((dep["name"], tuple(dep.get("extra", []))))
    return {k.split("[", 1)[0] for k in seen}
