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
    "hemovision-redis",
    "hemovision-auth",
    "hemovision-service-credential",
    "hemovision-blobstore",
}


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
