"""`hemovision up` / `hemovision down`: the whole system as local processes on one machine.

Order: preflight (PostgreSQL, Redis, free ports) -> database created if missing ->
migrations as one-off steps -> model registry seeded from the model base -> every
service started in dependency order, each only after the ones it needs answer their
health check -> the URL is printed. Ctrl-C / SIGTERM (or `hemovision down` from
another shell) stops everything in reverse order: SIGTERM to each process group,
then SIGKILL after the grace period, so no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_PORTS = {
    "gateway": 8000,
    "auth": 50051,
    "preprocess": 50052,
    "inference": 50053,
    "history": 50054,
    "reports": 50055,
    "training": 50056,
    "model-server": 8500,
    "model-server-rest": 8501,
}
GRPC_SERVICE_NAMES = {
    "auth": "hemovision.auth.v1.AuthService",
    "preprocess": "hemovision.preprocess.v1.PreprocessService",
    "inference": "hemovision.inference.v1.InferenceService",
    "history": "hemovision.history.v1.HistoryService",
    "reports": "hemovision.reports.v1.ReportsService",
    "training": "hemovision.training.v1.TrainingService",
    "model-server": "tensorflow.serving.PredictionService",
}
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/hemovision"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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

    def port(self, name: str) -> int:
        return BASE_PORTS[name] + self.port_offset

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.port(name)}"

    @property
    def var(self) -> Path:
        return (self.var_dir or self.root / "var").resolve()

    @property
    def models(self) -> Path:
        return (self.model_base or self.root / "models").resolve()

    @property
    def state_file(self) -> Path:
        return self.var / "run" / "devstack.json"


@dataclass
class Proc:
    """One process of the stack and how to tell it is ready."""

    name: str
    argv: list[str]
    health: tuple[str, ...] | None = None  # ("grpc", addr, service) | ("http", url)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _dev_secret(var: Path, name: str) -> str:
    """A random development secret kept under var/ so restarts keep issued credentials valid."""
    path = var / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def build_env(cfg: StackConfig) -> dict[str, str]:
    """Every process gets the whole map; each reads only its own HV_<SVC>_ prefix."""
    worker_secret = _dev_secret(cfg.var, "batch-worker")
    env = {
        "HV_ENV": "development",
        "HV_DATABASE_URL": cfg.database_url,
        "HV_REDIS_URL": cfg.redis_url,
        "HV_MODEL_BASE": str(cfg.models),
        "HV_MODEL_NAME": "hemovision",
        "HV_VAR_DIR": str(cfg.var),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # auth
        "HV_AUTH_PORT": str(cfg.port("auth")),
        "HV_AUTH_SERVICE_CREDENTIALS": f"batch-worker:{worker_secret}",
        "HV_AUTH_SIGNING_KEY_SECRET": _dev_secret(cfg.var, "signing-key"),
        "HV_AUTH_PUBLIC_BASE_URL": f"http://127.0.0.1:{cfg.port('gateway')}",
        # preprocess
        "HV_PREPROCESS_PORT": str(cfg.port("preprocess")),
        "HV_PREPROCESS_AUTH_ADDR": cfg.addr("auth"),
        # history
        "HV_HISTORY_PORT": str(cfg.port("history")),
        "HV_HISTORY_AUTH_ADDR": cfg.addr("auth"),
        "HV_HISTORY_BLOB_ROOT": str(cfg.var / "blobs"),
        # reports
        "HV_REPORTS_PORT": str(cfg.port("reports")),
        "HV_REPORTS_AUTH_ADDR": cfg.addr("auth"),
        "HV_REPORTS_HISTORY_ADDR": cfg.addr("history"),
        # training
        "HV_TRAINING_PORT": str(cfg.port("training")),
        "HV_TRAINING_AUTH_ADDR": cfg.addr("auth"),
        "HV_TRAINING_HISTORY_ADDR": cfg.addr("history"),
        "HV_TRAINING_MODEL_BASE": str(cfg.models),
        "HV_TRAINING_WORK_DIR": str(cfg.var / "training"),
        # PBC replay + the PBC val check of "adapt to our lab": the data set beside the checkout
        "HV_TRAINING_REPLAY_DATA_DIR": os.environ.get(
            "HV_TRAINING_REPLAY_DATA_DIR", str((cfg.root.parent / "shared" / "data" / "pbc_128").resolve())),
        # model server + inference
        "HV_MODEL_SERVER_PORT": str(cfg.port("model-server")),
        "HV_MODEL_SERVER_REST_PORT": str(cfg.port("model-server-rest")),
        "HV_MODEL_SERVER_MODEL_BASE": str(cfg.models),
        "HV_INFERENCE_PORT": str(cfg.port("inference")),
        "HV_INFERENCE_AUTH_ADDR": cfg.addr("auth"),
        "HV_INFERENCE_MODEL_SERVER_ADDR": cfg.addr("model-server"),
        "HV_INFERENCE_TRAINING_ADDR": cfg.addr("training"),
        "HV_INFERENCE_MODEL_BASE": str(cfg.models),
        # gateway + batch worker
        "HV_GATEWAY_PORT": str(cfg.port("gateway")),
        "HV_GATEWAY_AUTH_ADDR": cfg.addr("auth"),
        "HV_GATEWAY_PREPROCESS_ADDR": cfg.addr("preprocess"),
        "HV_GATEWAY_INFERENCE_ADDR": cfg.addr("inference"),
        "HV_GATEWAY_HISTORY_ADDR": cfg.addr("history"),
        "HV_GATEWAY_REPORTS_ADDR": cfg.addr("reports"),
        "HV_GATEWAY_TRAINING_ADDR": cfg.addr("training"),
        "HV_GATEWAY_UPLOAD_DIR": str(cfg.var / "uploads"),
        "HV_GATEWAY_SERVICE_ID": "batch-worker",
        "HV_GATEWAY_SERVICE_SECRET": worker_secret,
    }
    return env


def build_plan(cfg: StackConfig) -> tuple[list[list[str]], list[Proc]]:
    """(one-off steps, long-running processes in start order)."""
    py = cfg.python
    steps = [
        [py, "-m", "hemovision_auth", "migrate"],
        [py, "-m", "hemovision_history", "migrate"],
        [py, "-m", "hemovision_training", "migrate"],
        [py, "-m", "hemovision_training", "register-existing"],
    ]

    def grpc(name: str) -> tuple[str, ...]:
        return ("grpc", cfg.addr(name), GRPC_SERVICE_NAMES[name])

    procs = [
        Proc("auth", [py, "-m", "hemovision_auth", "serve"], grpc("auth")),
        Proc("preprocess", [py, "-m", "hemovision_preprocess", "serve"], grpc("preprocess")),
        Proc("history", [py, "-m", "hemovision_history", "serve"], grpc("history")),
        Proc("training", [py, "-m", "hemovision_training", "serve"], grpc("training")),
        Proc("reports", [py, "-m", "hemovision_reports", "serve"], grpc("reports")),
        Proc("model-server", [py, "-m", "hemovision_inference", "model-server"], grpc("model-server")),
        Proc("inference", [py, "-m", "hemovision_inference", "serve"], grpc("inference")),
        Proc(
            "gateway",
            [py, "-m", "hemovision_gateway", "serve"],
            ("http", f"http://127.0.0.1:{cfg.port('gateway')}/readyz"),
        ),
    ]
    if cfg.workers:
        procs += [
            Proc(
                "batch-worker",
                [py, "-m", "celery", "-A", "hemovision_gateway.worker", "worker", "-Q", "batches",
                 "--concurrency", "1", "--pool", "solo", "--loglevel", "INFO"],
            ),
            Proc("training-worker", [py, "-m", "hemovision_training", "worker"]),
        ]
    return steps, procs


class StackError(RuntimeError):
    """Start-up cannot go on; the message says what to do."""


def preflight(cfg: StackConfig) -> None:
    """PostgreSQL and Redis reachable and our ports free, or a message that says how to fix it."""
    import psycopg2
    import redis

    db = urlsplit(cfg.database_url.replace("+psycopg2", ""))
    try:
        psycopg2.connect(
            host=db.hostname, port=db.port or 5432, user=db.username or "postgres", dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg2.OperationalError as exc:
        raise StackError(
            f"PostgreSQL is not reachable at {db.hostname}:{db.port or 5432} ({str(exc).strip()}).\n"
            "Start it, e.g.: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from None
    try:
        redis.Redis.from_url(cfg.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise StackError(
            f"Redis is not reachable at {cfg.redis_url} ({exc}).\n"
            "Start it, e.g.: redis-server --daemonize yes --bind 127.0.0.1 --port 6379"
        ) from None
    busy = []
    for name in BASE_PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", cfg.port(name)))
            except OSError:
                busy.append(f"{name} ({cfg.port(name)})")
    if busy:
        raise StackError(
            "ports already in use: " + ", ".join(busy)
            + ".\nIs HemoVision already running? Stop it with `make down`, or pick other ports with --port-offset."
        )


async def _grpc_ready(addr: str, service: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(addr) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:  # noqa: S310 - our own loopback URL
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.env = {**os.environ, **build_env(cfg)}
        self.steps, self.procs = build_plan(cfg)
        self.log_dir = cfg.var / "log"

    def say(self, msg: str) -> None:
        print(f"[hemovision] {msg}", flush=True)

    def run_steps(self) -> None:
        from hemovision_database import ensure_database

        if ensure_database(self.cfg.database_url):
            self.say(f"created database {urlsplit(self.cfg.database_url).path.lstrip('/')}")
        for argv in self.steps:
            label = " ".join(argv[2:])
            self.say(f"step: {label}")
            done = subprocess.run(argv, env=self.env, cwd=self.cfg.root, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise StackError(f"`{label}` failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for proc in self.procs:
            log = (self.log_dir / f"{proc.name}.log").open("ab")
            proc.popen = subprocess.Popen(
                proc.argv, env=self.env, cwd=self.cfg.root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # own process group: killed as a whole
            )
            log.close()
            self._write_state()
            self._wait_ready(proc)
            self.say(f"{proc.name} up (pid {proc.popen.pid})")

    def _wait_ready(self, proc: Proc) -> None:
        assert proc.popen is not None
        deadline = time.monotonic() + self.cfg.startup_timeout
        while True:
            if proc.popen.poll() is not None:
                raise StackError(
                    f"{proc.name} exited with {proc.popen.returncode} during start-up; last log lines:\n"
                    + _tail(self.log_dir / f"{proc.name}.log")
                )
            if proc.health is None:
                time.sleep(1.0)  # workers: alive after a second is all we can tell
                return
            ready = (
                asyncio.run(_grpc_ready(proc.health[1], proc.health[2]))
                if proc.health[0] == "grpc"
                else _http_ready(proc.health[1])
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{proc.name} not healthy after {self.cfg.startup_timeout:.0f}s; last log lines:\n"
                    + _tail(self.log_dir / f"{proc.name}.log")
                )
            time.sleep(0.3)

    def _write_state(self) -> None:
        self.cfg.state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor": os.getpid(),
            "processes": {p.name: p.popen.pid for p in self.procs if p.popen is not None},
        }
        self.cfg.state_file.write_text(json.dumps(state))

    def stop(self) -> None:
        running = [p for p in reversed(self.procs) if p.popen is not None and p.popen.poll() is None]
        for proc in running:
            _signal_group(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace_seconds + 5
        for proc in running:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{proc.name} ignored SIGTERM; killing it")
        for proc in self.procs:
            if proc.popen is not None:
                _signal_group(proc.popen.pid, signal.SIGKILL)  # leftovers of the group, if any
                proc.popen.wait()
        self.cfg.state_file.unlink(missing_ok=True)
        self.say("stopped")

    def watch(self, stop: list[bool]) -> None:
        """Returns when asked to stop or when a process dies (which is reported)."""
        while not stop:
            for proc in self.procs:
                if proc.popen is not None and proc.popen.poll() is not None:
                    self.say(f"{proc.name} exited with {proc.popen.returncode}; stopping the stack. Log: "
                             f"{self.log_dir / (proc.name + '.log')}")
                    return
            time.sleep(0.5)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def up(cfg: StackConfig) -> int:
    stack = Stack(cfg)
    stop: list[bool] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        preflight(cfg)
        stack.run_steps()
        stack.start()
        stack.say(f"HemoVision is up: http://127.0.0.1:{cfg.port('gateway')}/  (API docs at /docs; Ctrl-C stops)")
        signal.signal(signal.SIGTERM, lambda s, f: stop.append(True))
        stack.watch(stop)
        return 0 if stop else 1
    except StackError as exc:
        print(f"[hemovision] error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def down(cfg: StackConfig, timeout: float = 30.0) -> int:
    """Asks a running `up` to stop (SIGTERM); kills what is left if it does not."""
    if not cfg.state_file.exists():
        print("[hemovision] nothing is running (no state file)")
        return 0
    state = json.loads(cfg.state_file.read_text())
    supervisor = state.get("supervisor")
    try:
        os.kill(supervisor, signal.SIGTERM)
    except (ProcessLookupError, TypeError):
        supervisor = None
    deadline = time.monotonic() + timeout
    while supervisor and time.monotonic() < deadline:
        try:
            os.kill(supervisor, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    for pid in state.get("processes", {}).values():
        _signal_group(pid, signal.SIGKILL)
    cfg.state_file.unlink(missing_ok=True)
    print("[hemovision] stopped")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("HV_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("HV_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("HV_PORT_OFFSET", "0")))
    parser.add_argument("--model-base", type=Path, default=None)
    parser.add_argument("--var-dir", type=Path, default=None)
    parser.add_argument("--no-workers", action="store_true", help="do not start the Celery workers")


def config_from_args(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        root=Path.cwd(),
        database_url=args.database_url,
        redis_url=args.redis_url,
        port_offset=args.port_offset,
        model_base=args.model_base,
        var_dir=args.var_dir,
        workers=not args.no_workers,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-devstack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    return up(cfg) if args.command == "up" else down(cfg)


if __name__ == "__main__":
    sys.exit(main())
