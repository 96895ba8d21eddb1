"""The service topology, defined once: every HemoVision server, its default port, its gRPC
health name and the peers it calls.

Derived from here: the dev stack (`hemovision up`: ports, peer addresses, health checks), the
gateway's channels, each service's settings defaults, and deploy/checks, which verify that
docker-compose.yml and the Kubernetes manifests (YAML, which cannot import this) agree.
The Celery workers (WORKERS) listen only for Prometheus: each serves /metrics on its own port.

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
    # servers this one calls, by name (it starts after them)
    peers: tuple[str, ...] = ()
    # Prometheus /metrics, on its own port so the API's ingress never exposes it
    metrics_port: int = 0
    # servers it calls only from a background loop that retries (an outbox): it gets their
    # address and network access but need not start after them (auth -> history: the audit
    # forwarder; history verifies tokens with auth, so history starts after auth)
    background_peers: tuple[str, ...] = ()

    @property
    def all_peers(self) -> tuple[str, ...]:
        return self.peers + self.background_peers


def _hemovision_grpc(name: str, port: int, peers: tuple[str, ...] = (), *, metrics_port: int,
                     background_peers: tuple[str, ...] = ()) -> Server:
    """A HemoVision gRPC service: proto path = import path, so its health name follows its name."""
    return Server(name, port, f"hemovision.{name}.v1.{name.capitalize()}Service", peers, metrics_port,
                  background_peers)


# TF Serving's REST port beside its gRPC one (model metadata, readiness, and its metrics at
# /monitoring/prometheus/metrics; nobody calls it as a peer)
MODEL_SERVER_REST_PORT = 8501

SERVERS: dict[str, Server] = {s.name: s for s in (
    Server("gateway", 8000, "", ("auth", "inference", "history", "reports", "training"), 9100),
    _hemovision_grpc("auth", 50051, metrics_port=9101, background_peers=("history",)),
    _hemovision_grpc("preprocess", 50052, ("auth",), metrics_port=9102),
    # preprocess: on the short route (docs/serving.md) inference has the images prepared itself;
    # training: GetActiveModelVersion reconciliation; model-server: the models themselves
    _hemovision_grpc("inference", 50053, ("auth", "preprocess", "training", "model-server"), metrics_port=9103),
    _hemovision_grpc("history", 50054, ("auth",), metrics_port=9104),
    _hemovision_grpc("reports", 50055, ("auth", "history"), metrics_port=9105),
    _hemovision_grpc("training", 50056, ("auth", "history"), metrics_port=9106),
    # TF Serving's API: tensorflow/serving in deployments, hemovision_model_server in development
    Server("model-server", 8500, "tensorflow.serving.PredictionService", metrics_port=MODEL_SERVER_REST_PORT),
)}
# The grpc.health.v1 name every HemoVision gRPC server reports SERVING while its process works,
# whatever its dependencies do: the liveness probe's. Readiness asks for the server's own
# health_service, which goes NOT_SERVING while it cannot serve (inference without a warm model).
LIVENESS_HEALTH_SERVICE = "liveness"
# The HemoVision gRPC services (model-server is TF Serving's API, the gateway is HTTP).
HEMOVISION_GRPC_SERVICES: tuple[str, ...] = tuple(
    s.name for s in SERVERS.values() if s.health_service.startswith("hemovision."))




@dataclass(frozen=True)
class Worker:
    """A Celery worker of the system: it listens on nothing but its Prometheus /metrics port."""

    name: str  # the compose service and Kubernetes Deployment
    # the server whose settings (env prefix) it reads: its metrics port is that server's
    # `worker_metrics_port` setting, HV_<SERVER>_WORKER_METRICS_PORT
    settings_of: str
    metrics_port: int


WORKERS: dict[str, Worker] = {w.name: w for w in (
    Worker("gateway-worker", "gateway", 9107),  # `make up` calls its process batch-worker
    Worker("training-worker", "training", 9108),
)}


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


def default_metrics_port(name: str) -> int:
    return SERVERS[name].metrics_port


def default_worker_metrics_port(name: str) -> int:
    return WORKERS[name].metrics_port


def worker_metrics_port_env(name: str) -> str:
    """'training-worker' -> 'HV_TRAINING_WORKER_METRICS_PORT'."""
    return env_prefix(WORKERS[name].settings_of) + "WORKER_METRICS_PORT"


def default_addr(name: str, host: str = LOCALHOST) -> str:
    """Where `name` listens when everything runs on one machine: '127.0.0.1:50052'."""
    return f"{host}:{SERVERS[name].port}"


def callers_of(name: str) -> tuple[str, ...]:
    """The servers that call `name` (whom its network policy must let in)."""
    return tuple(s.name for s in SERVERS.values() if name in s.all_peers)
