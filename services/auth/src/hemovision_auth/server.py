"""create_server(): the auth gRPC server with its dependencies (a hemovision_grpc_server.Server),
ready for tests (port 0) and for `serve` (hemovision_grpc_server.run). Beside the RPCs it runs the
audit forwarder (auth.audit_outbox -> history AppendAuditEvents) as a background task of the server."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.exc import ProgrammingError

import hemovision_grpc_server
from hemovision.auth.v1 import auth_pb2_grpc
from hemovision_auth.audit import AuditForwarder, AuditSink, HistoryAuditSink, ServiceTokenSource
from hemovision_auth.housekeeping import run_housekeeping
from hemovision_auth.keys import KeyStore
from hemovision_auth.mailer import Mailer, mailer_from_settings
from hemovision_auth.passwords import Passwords
from hemovision_auth.service import AuthService
from hemovision_auth.servicer import PUBLIC_METHODS, SERVICE_NAME, AuthServiceServicer
from hemovision_auth.settings import SELF_SERVICE_ID, Settings
from hemovision_database import create_db_engine
from hemovision_tokens import TokenInterceptor, TokenVerifier

log = logging.getLogger(__name__)


def build_service(settings: Settings, *, engine: Engine, redis: Any, mailer: Mailer) -> AuthService:
    longest_token = max(settings.access_token_ttl_s, settings.api_key_token_ttl_s, settings.obo_token_ttl_s)
    keys = KeyStore(
        engine,
        secret=settings.key_secret,
        # a retired key stays published while tokens it signed can live, plus verifier cache time
        publish_retired_for_s=longest_token + settings.public_keys_max_age_s + 60,
    )
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        min_length=settings.password_min_length,
    )
    return AuthService(settings, engine=engine, redis=redis, mailer=mailer, keys=keys, passwords=passwords)


async def create_server(
    settings: Settings,
    *,
    engine: Engine | None = None,
    redis: Any = None,
    mailer: Mailer | None = None,
    audit_sink: AuditSink | None = None,
) -> hemovision_grpc_server.Server[AuthService]:
    """`audit_sink` replaces history's AppendAuditEvents (tests); with HV_AUTH_AUDIT_FORWARD=false
    events stay in the outbox until a server with forwarding on sends them."""
    closers: list[Callable[[], Any]] = []
    if engine is None:
        engine = create_db_engine(settings.database_url)
        closers.append(engine.dispose)
    if redis is None:
        redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        closers.append(redis.aclose)
    service = build_service(settings, engine=engine, redis=redis, mailer=mailer or mailer_from_settings(settings))
    try:
        kid = await asyncio.to_thread(service.keys.ensure_current_sync)
    except ProgrammingError as exc:
        for close in reversed(closers):
            result = close()
            if inspect.isawaitable(result):
                await result
        raise RuntimeError("the auth schema is missing: run `python -m hemovision_auth migrate` first") from exc
    log.info("signing key ready", extra={"kid": kid})

    verifier = TokenVerifier(
        service.keys, redis_url=None, redis=redis, issuer=settings.issuer, audience=settings.audience
    )
    servicer = AuthServiceServicer(service)
    running = await hemovision_grpc_server.create_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server),
        interceptors=[TokenInterceptor(verifier, PUBLIC_METHODS)],
    )
    # stop() also disposes of the engine and closes the Redis client made here (not those passed in)
    server = hemovision_grpc_server.Server(running, service=service, closers=closers)
    if settings.audit_forward:
        if audit_sink is None:
            channel = hemovision_grpc_server.create_channel(settings.history_addr)
            server.on_close(channel.close)
            tokens = ServiceTokenSource(
                service.keys.current, ttl_s=settings.service_token_ttl_s, issuer=settings.issuer,
                audience=settings.audience, act=SELF_SERVICE_ID,
            )
            audit_sink = HistoryAuditSink(channel, tokens, timeout_s=settings.audit_forward_timeout_s)
        service.audit_forwarder = AuditForwarder(
            engine,
            audit_sink,
            batch=settings.audit_forward_batch,
            interval_s=settings.audit_forward_interval_s,
            retry_base_s=settings.audit_retry_base_s,
            retry_max_s=settings.audit_retry_max_s,
        )
        server.start_task(service.audit_forwarder.run(), name="audit-forwarder")
    server.start_task(run_housekeeping(engine, settings), name="auth-housekeeping")
    return server
