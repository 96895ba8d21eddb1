"""The service topology, defined once: every HemoVision server, its default port, its gRPC
health name and the peers it calls.

Derived from here: the dev stack (`hemovision up`: ports, peer addresses, health checks), the
gateway's channels, each service's settings defaults, and deploy/checks, which verify that
docker-compose.yml and the Kubernetes manifests (YAML, which cannot import this) agree.

Names follow docs/engineering.md: a server `<name>` reads `HV_<NAME>_PORT`, and reaches peer
`<peer>` through its setting `<peer>_addr`, env `HV_<NAME>_<PEER>_ADDR` ("-" becomes "_").
The name is also the compose service and Kubernetes Service a peer address points at.

Standard library only: deploy/checks run in their own tool venv and load this file by path.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    """One listening process of the system."""

    name: str
    port: int
    # grpc.health.v1 service name the server reports SERVING for ("" for the HTTP gateway)
    health_service: str
    # servers this one calls, by name
    peers: tuple[str, ...] = ()


def _hemovision_grpc(name: str, port: int, peers: tuple[str, ...] = ()) -> Server:
    """A HemoVision gRPC service: proto path = import path, so its health name follows its name."""
    return Server(name, port, f"hemovision.{name}.v1.{name.capitalize()}Service", peers)


SERVERS: dict[str, Server] = {s.name: s for s in (
    Server("gateway", 8000, "", ("auth", "inference", "history", "reports", "training")),
    _hemovision_grpc("auth", 50051),
    _hemovision_grpc("preprocess", 50052, ("auth",)),
    # preprocess: on the short route (docs/serving.md) inference has the images prepared itself;
    # training: GetActiveModelVersion reconciliation; model-server: the models themselves
    _hemovision_grpc("inference", 50053, ("auth", "preprocess", "training", "model-server")),
    _hemovision_grpc("history", 50054, ("auth",)),
    _hemovision_grpc("reports", 50055, ("auth", "history")),
    _hemovision_grpc("training", 50056, ("auth", "history")),
    # TF Serving's API: tensorflow/serving in deployments, hemovision_model_server in development
    Server("model-server", 8500, "tensorflow.serving.PredictionService"),
)}
# The HemoVision gRPC services (model-server is TF Serving's API, the gateway is HTTP).
HEMOVISION_GRPC_SERVICES: tuple[str, ...] = tuple(
    s.name for s in SERVERS.values() if s.health_service.startswith("hemovision."))
# TF Serving's REST port beside its gRPC one (model metadata, readiness; nobody calls it as a peer)
MODEL_SERVER_REST_PORT = 8501


def env_prefix(name: str) -> str:
    """'model-server' -> 'HV_MODEL_SERVER_' (the server's pydantic-settings env prefix)."""
    return f"HV_{name.upper().replace('-', '_')}_"


def addr_setting(peer: str) -> str:
    """'model-server' -> 'model_server_addr': the settings field that holds a peer's address."""
    return f"{peer.replace('-', '_')}_addr"


def addr_env(server: str, peer: str) -> str:
    """('inference', 'preprocess') -> 'HV_INFERENCE_PREPROCESS_ADDR'."""
    return env_prefix(server) + addr_setting(peer).upper()


def default_port(name: str) -> int:
    return SERVERS[name].port


def default_addr(name: str, host: str = LOCALHOST) -> str:
    """Where `name` listens when everything runs on one machine: '127.0.0.1:50052'."""
    return f"{host}:{SERVERS[name].port}"


def callers_of(name: str) -> tuple[str, ...]:
    """The servers that call `name` (whom its network policy must let in)."""
    return tuple(s.name for s in SERVERS.values() if name in s.peers)
