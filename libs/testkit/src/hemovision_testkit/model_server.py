"""The embedded model server as a real child process, for tests that kill it (SIGKILL) or load it
from outside. Runs `python -m hemovision_model_server`: the test's environment must have the
hemovision-model-server distribution installed (a dev dependency of the services that use this)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import psutil

from hemovision_grpc_server import wait_for_health


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServerProcess:
    """kill() sends SIGKILL; start() again reuses the same ports. Extra keyword arguments are
    environment variables (e.g. HV_MODEL_SERVER_DRAIN_SECONDS="2")."""

    def __init__(self, model_base: str | os.PathLike[str], *, port: int | None = None, rest_port: int = -1, **env: str) -> None:
        self.model_base = str(model_base)
        self.port = port or _free_port()
        self.rest_port = rest_port
        self.env = {k: str(v) for k, v in env.items()}
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "HV_MODEL_SERVER_HOST": "127.0.0.1",
            "HV_MODEL_SERVER_PORT": str(self.port),
            "HV_MODEL_SERVER_REST_PORT": str(self.rest_port),
            "HV_MODEL_SERVER_MODEL_BASE": self.model_base,
            "HV_MODEL_SERVER_POLL_INTERVAL_S": "0.3",
            "HV_MODEL_SERVER_LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.process = subprocess.Popen([sys.executable, "-m", "hemovision_model_server"], env=env, stdin=subprocess.DEVNULL)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        await wait_for_health(self.address, "", timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss if self.process else 0
