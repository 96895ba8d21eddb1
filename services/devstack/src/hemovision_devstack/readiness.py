"""May the stack start (PostgreSQL, Redis, free ports), and is a started process ready."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from hemovision_contracts.topology import LOCALHOST
from hemovision_grpc_server import TlsSettings

from hemovision_devstack.errors import StackError
from hemovision_devstack.plan import BASE_PORTS, StackConfig


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
                s.bind((LOCALHOST, cfg.port(name)))
            except OSError:
                busy.append(f"{name} ({cfg.port(name)})")
    if busy:
        raise StackError(
            "ports already in use: " + ", ".join(busy)
            + ".\nIs HemoVision already running? Stop it with `make down`, or pick other ports with --port-offset."
        )


async def grpc_ready(addr: str, service: str, tls: TlsSettings | None = None) -> bool:
    """The server at `addr` reports `service` SERVING (grpc.health.v1); over mutual TLS with
    `tls` (default: the HV_TLS_* environment, plaintext when unset)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from hemovision_grpc_server import create_channel

    async with create_channel(addr, tls=tls) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:  # noqa: S310 - our own loopback URL
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False
