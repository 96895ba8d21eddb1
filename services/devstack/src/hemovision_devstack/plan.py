"""What `hemovision up` runs: its configuration, every process's environment, the start order.

Ports, peer addresses, health names and the start order all come from the service topology
(hemovision_contracts.topology), shifted by --port-offset.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hemovision_contracts.topology import (
    LOCALHOST,
    MODEL_SERVER_REST_PORT,
    SERVERS,
    WORKERS,
    addr_env,
    env_prefix,
    worker_metrics_port_env,
)
from hemovision_auth.tables import AUTH_APP_ROLE
from hemovision_database import as_role
from hemovision_grpc_server import TlsSettings
from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE
from hemovision_training.tables import TRAINING_APP_ROLE

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/hemovision"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MODEL_SERVER_REST = "model-server-rest"
# Every port the stack binds, before --port-offset.
BASE_PORTS = {**{s.name: s.port for s in SERVERS.values()}, MODEL_SERVER_REST: MODEL_SERVER_REST_PORT}
# With --tls: the client certificate of the supervisor's health checks, the one-off steps and
# your own `hemovision` commands against the stack (var/secrets/tls/cli.{pem,key}).
TLS_CLIENT = "cli"


@dataclass
class RestartPolicy:
    """How the supervisor restarts a process that exited while the stack runs: after `initial`
    seconds, doubling with each further exit up to `maximum`; a process that stayed up
    `reset_after` seconds starts again from `initial`."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.reset_after:
            return self.initial
        return min(self.maximum, previous * 2)


@dataclass
class StackConfig:
    root: Path
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    port_offset: int = 0
    model_base: Path | None = None
    var_dir: Path | None = None
    python: str = sys.executable
    startup_timeout: float = 180.0
    grace_seconds: float = 10.0
    workers: bool = True
    # Mutual TLS between every process (`--tls` / HV_TLS=1): a local CA under var/secrets/tls.
    tls: bool = False
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    # A server's port as the user set it (HV_<SVC>_PORT, like every setting README lists),
    # else the topology's; --port-offset shifts both.
    port_overrides: dict[str, int] = field(default_factory=dict)

    @classmethod
    def ports_from_env(cls, environ: Mapping[str, str]) -> dict[str, int]:
        env_names = {name: env_prefix(name) + "PORT" for name in SERVERS}
        env_names[MODEL_SERVER_REST] = "HV_MODEL_SERVER_REST_PORT"
        return {name: int(environ[var]) for name, var in env_names.items() if environ.get(var, "").isdigit()}

    def port(self, name: str) -> int:
        return self.port_overrides.get(name, BASE_PORTS[name]) + self.port_offset

    def addr(self, name: str) -> str:
        return f"{LOCALHOST}:{self.port(name)}"

    @property
    def var(self) -> Path:
        return (self.var_dir or self.root / "var").resolve()

    @property
    def models(self) -> Path:
        return (self.model_base or self.root / "models").resolve()

    @property
    def state_file(self) -> Path:
        return self.var / "run" / "devstack.json"

    @property
    def tls_dir(self) -> Path:
        return self.var / "secrets" / "tls"


@dataclass
class Proc:
    """One process of the stack and how to tell it is ready."""

    name: str
    argv: list[str]
    health: tuple[str, ...] | None = None  # ("grpc", addr, service) | ("http", url)
    # What this process gets beside the stack's environment (with --tls: its own certificate).
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _dev_secret(var: Path, name: str) -> str:
    """A random development secret kept under var/ so restarts keep issued credentials valid."""
    path = var / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def topology_env(cfg: StackConfig) -> dict[str, str]:
    """HV_<SVC>_PORT of every server, HV_<SVC>_<PEER>_ADDR of every edge and the metrics ports
    (HV_<SVC>_METRICS_PORT, HV_<SVC>_WORKER_METRICS_PORT of the Celery workers), on this machine."""
    env = {"HV_MODEL_SERVER_REST_PORT": str(cfg.port(MODEL_SERVER_REST))}
    for server in SERVERS.values():
        env[env_prefix(server.name) + "PORT"] = str(cfg.port(server.name))
        if server.metrics_port and server.name != "model-server":  # the model server's are on its REST port
            env[env_prefix(server.name) + "METRICS_PORT"] = str(server.metrics_port + cfg.port_offset)
        for peer in server.all_peers:
            env[addr_env(server.name, peer)] = cfg.addr(peer)
    for worker in WORKERS.values():  # the Celery workers' /metrics
        env[worker_metrics_port_env(worker.name)] = str(worker.metrics_port + cfg.port_offset)
    return env


# The schema-owning services and the restricted runtime role each serves as (docs/decisions.md 55).
RUNTIME_ROLES = {"auth": AUTH_APP_ROLE, "history": HISTORY_APP_ROLE, "training": TRAINING_APP_ROLE}


def database_env(cfg: StackConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The database connections of the schema-owning services (docs/decisions.md 55): each one's
    `migrate` as the schema owner (HV_<SVC>_MIGRATE_DATABASE_URL = the stack's database URL), its
    server (and the training worker) as its restricted runtime role (HV_<SVC>_DATABASE_URL), and
    history's retention purge's audit deletions as hemovision_audit_retention
    (docs/history.md "Append-only"). Each is the stack's URL with another user, unless set in the
    environment (a cluster with password authentication needs the roles' passwords there)."""
    wanted = {"HV_HISTORY_RETENTION_DATABASE_URL": as_role(cfg.database_url, AUDIT_RETENTION_ROLE)}
    for service, role in RUNTIME_ROLES.items():
        wanted[env_prefix(service) + "MIGRATE_DATABASE_URL"] = cfg.database_url
        wanted[env_prefix(service) + "DATABASE_URL"] = as_role(cfg.database_url, role)
    return {key: environ.get(key) or value for key, value in wanted.items()}


def build_env(cfg: StackConfig) -> dict[str, str]:
    """Every process gets the whole map; each reads only its own HV_<SVC>_ prefix."""
    worker_secret = _dev_secret(cfg.var, "batch-worker")
    return {
        "HV_ENV": "development",
        "HV_DATABASE_URL": cfg.database_url,
        "HV_REDIS_URL": cfg.redis_url,
        "HV_MODEL_BASE": str(cfg.models),
        "HV_MODEL_NAME": "hemovision",
        "HV_VAR_DIR": str(cfg.var),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # the services' shared key for revocation proofs (hemovision_tokens.revocation_proof)
        "HV_INTERNAL_KEY": os.environ.get("HV_INTERNAL_KEY") or _dev_secret(cfg.var, "internal-key"),
        **topology_env(cfg),
        # auth
        "HV_AUTH_SERVICE_CREDENTIALS": f"batch-worker:{worker_secret}",
        "HV_AUTH_SIGNING_KEY_SECRET": _dev_secret(cfg.var, "signing-key"),
        "HV_AUTH_PUBLIC_BASE_URL": f"http://{LOCALHOST}:{cfg.port('gateway')}",
        # auth, history, training: migrate as the owner, serve as their runtime roles; history's
        # purge deletes audit rows as the retention role
        **database_env(cfg, os.environ),
        "HV_HISTORY_BLOB_ROOT": str(cfg.var / "blobs"),
        # training
        "HV_TRAINING_MODEL_BASE": str(cfg.models),
        "HV_TRAINING_WORK_DIR": str(cfg.var / "training"),
        # PBC replay + the PBC val check of "adapt to our lab": the data set beside the checkout
        "HV_TRAINING_REPLAY_DATA_DIR": os.environ.get(
            "HV_TRAINING_REPLAY_DATA_DIR", str((cfg.root.parent / "shared" / "data" / "pbc_128").resolve())),
        # model server + inference
        "HV_MODEL_SERVER_MODEL_BASE": str(cfg.models),
        "HV_INFERENCE_MODEL_BASE": str(cfg.models),
        # gateway + batch worker
        "HV_GATEWAY_UPLOAD_DIR": str(cfg.var / "uploads"),
        "HV_GATEWAY_SERVICE_ID": "batch-worker",
        "HV_GATEWAY_SERVICE_SECRET": worker_secret,
    }


def tls_env(files: TlsSettings) -> dict[str, str]:
    """The HV_TLS_* settings (hemovision_grpc_server.tls) that make a process use `files`."""
    return {"HV_TLS_CERT_FILE": str(files.cert_file), "HV_TLS_KEY_FILE": str(files.key_file),
            "HV_TLS_CA_FILE": str(files.ca_file)}


def ensure_tls(cfg: StackConfig, names: list[str]) -> dict[str, TlsSettings]:
    """With --tls: the local CA and a certificate per process (and TLS_CLIENT) under var/secrets/tls,
    made or renewed as needed (hemovision_grpc_server.certificates); without: {}."""
    if not cfg.tls:
        return {}
    from hemovision_grpc_server.certificates import ensure_local_pki

    return ensure_local_pki(cfg.tls_dir, [*names, TLS_CLIENT])


def start_order() -> list[str]:
    """Every server after the peers it calls (the topology is acyclic), else in declared order."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for peer in SERVERS[name].peers:
                visit(peer)
            order.append(name)

    for name in SERVERS:
        visit(name)
    return order


def _server(cfg: StackConfig, name: str) -> Proc:
    py = cfg.python
    if name == "gateway":
        return Proc(name, [py, "-m", "hemovision_gateway", "serve"],
                     ("http", f"http://{LOCALHOST}:{cfg.port(name)}/readyz"))
    argv = ([py, "-m", "hemovision_model_server"] if name == "model-server"
            else [py, "-m", f"hemovision_{name}", "serve"])
    return Proc(name, argv, ("grpc", cfg.addr(name), SERVERS[name].health_service))


def build_plan(cfg: StackConfig) -> tuple[list[list[str]], list[Proc]]:
    """(one-off steps, long-running processes in start order)."""
    py = cfg.python
    steps = [
        [py, "-m", "hemovision_auth", "migrate"],
        [py, "-m", "hemovision_history", "migrate"],
        [py, "-m", "hemovision_training", "migrate"],
        [py, "-m", "hemovision_training", "register-existing"],
    ]
    procs = [_server(cfg, name) for name in start_order()]
    if cfg.workers:
        procs += [
            Proc(
                "batch-worker",
                [py, "-m", "celery", "-A", "hemovision_gateway.batches.worker", "worker", "-Q", "batches",
                 "--concurrency", "1", "--pool", "solo", "--loglevel", "INFO"],
            ),
            Proc("training-worker", [py, "-m", "hemovision_training", "worker"]),
            # schedules the retention purge (hemovision_gateway.batches.worker: beat_schedule)
            Proc("celery-beat", [py, "-m", "celery", "-A", "hemovision_gateway.batches.worker", "beat",
                                 "--schedule", str(cfg.var / "celerybeat-schedule"), "--loglevel", "INFO"]),
        ]
    # every process, whatever the list above holds, runs with its own certificate under --tls
    certificates = ensure_tls(cfg, [p.name for p in procs])
    for proc in procs:
        if certificates:
            proc.env.update(tls_env(certificates[proc.name]))
    return steps, procs
