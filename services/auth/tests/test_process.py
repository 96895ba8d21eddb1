"""The real entry point: `migrate` (as the schema owner), then `serve` as a process signed in as
the runtime role hemovision_auth_app, healthy, SIGTERM -> clean exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid

import grpc

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_auth.tables import AUTH_APP_ROLE
from hemovision_database import as_role, drop_database
from hemovision_grpc_server import wait_for_health


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_migrate_serve_and_sigterm(postgres_url, redis_url):
    url = postgres_url.rsplit("/", 1)[0] + f"/hv_test_proc_{uuid.uuid4().hex[:8]}"  # `migrate` creates it
    port = _free_port()
    env = {
        **os.environ,
        "HV_AUTH_MIGRATE_DATABASE_URL": url,
        "HV_AUTH_DATABASE_URL": as_role(url, AUTH_APP_ROLE),
        "HV_AUTH_REDIS_URL": redis_url,
        "HV_AUTH_PORT": str(port),
        "HV_AUTH_ARGON2_MEMORY_KIB": "1024",
        "HV_AUTH_GRACE_SECONDS": "1",
        "HV_OTEL_EXPORTER": "none",
    }
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "hemovision_auth", "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        proc = subprocess.Popen([sys.executable, "-m", "hemovision_auth", "serve"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            await wait_for_health(f"127.0.0.1:{port}", "hemovision.auth.v1.AuthService", timeout=30)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                keys = await auth_pb2_grpc.AuthServiceStub(channel).GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5)
            assert len(keys.keys) == 1 and keys.keys[0].current  # created on first start
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert '"stopped"' in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        drop_database(url)
