"""A real Celery training worker as a subprocess, for the tests that need one."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path


def spawn_worker(env: dict, log_path: Path) -> subprocess.Popen:
    """`celery -A hemovision_training.tasks worker -Q training --pool solo` as a real process."""
    log = open(log_path, "ab")
    celery = Path(sys.executable).parent / "celery"
    proc = subprocess.Popen(
        [str(celery), "-A", "hemovision_training.tasks", "worker", "-Q", "training", "--concurrency", "1",
         "--pool", "solo", "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle",
         "--loglevel", "INFO"],
        # its /metrics on any free port, beside a running stack
        env={"HV_TRAINING_WORKER_METRICS_PORT": "0", **env}, stdout=log, stderr=subprocess.STDOUT,
        cwd=str(log_path.parent),
    )
    log.close()
    proc.log_path = log_path  # type: ignore[attr-defined]
    proc.env = env  # type: ignore[attr-defined]
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
