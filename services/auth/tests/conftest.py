"""An in-process auth server on port 0 with a real PostgreSQL database, Redis and SMTP server.

The server runs as it runs in every deployment: signed in as the restricted runtime role
hemovision_auth_app (`runtime_url`, migration 0003), so every test proves its privileges suffice;
`migrated_url` (and `engine`) is the schema owner's (the migrations, and tests that reach around
the service)."""

from __future__ import annotations

import email
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import grpc
import pytest
from aiosmtpd.controller import Controller

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_auth.server import create_server
from hemovision_auth.settings import Settings
from hemovision_auth.tables import AUTH_APP_ROLE
from hemovision_database import as_role, create_db_engine, run_migrations
from hemovision_grpc_server import Server
from hemovision_tokens import AuthKeyProvider, TokenVerifier, bearer_metadata

MIGRATIONS = Path(__file__).parents[1] / "src" / "hemovision_auth" / "migrations"
PASSWORD = "correct horse battery"
SERVICE_ID, SERVICE_SECRET = "batch-worker", "worker-secret-123"


@pytest.fixture(scope="module")
def migrated_url(postgres_url: str) -> str:
    run_migrations(migrations_dir=MIGRATIONS, url=postgres_url, schema="auth")
    return postgres_url


@pytest.fixture(scope="module")
def runtime_url(migrated_url: str) -> str:
    """The migrated database as the runtime role the server signs in as."""
    return as_role(migrated_url, AUTH_APP_ROLE)


@pytest.fixture(scope="module")
def engine(migrated_url):
    engine = create_db_engine(migrated_url)
    yield engine
    engine.dispose()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self._cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802 - aiosmtpd hook
        with self._cond:
            self.messages.append(email.message_from_bytes(envelope.content))
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.Message]:
        return [m for m in self.messages if m["To"] == address]

    def last_token(self, address: str, path: str) -> str:
        """The token of the newest mail to `address` whose link goes to `path`."""
        for msg in reversed(self.to(address)):
            body = msg.get_payload(decode=True).decode()
            match = re.search(rf"https?://\S+/{path}\?token=(\S+)", body)
            if match:
                return unquote(match.group(1))
        raise AssertionError(f"no {path} mail to {address}; got {[m['Subject'] for m in self.to(address)]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smtp():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


def make_settings(url: str, redis_url: str, smtp_port: int, **overrides) -> Settings:
    values = dict(
        port=0,
        database_url=url,
        redis_url=redis_url,
        environment="development",
        service_credentials=f"{SERVICE_ID}:{SERVICE_SECRET}",
        mail_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        public_base_url="http://hv.test",
        # cheap argon2id parameters: the suite hashes dozens of passwords
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        grace_seconds=0,
        # the forwarder's own tests start it with a fake sink (test_audit.py)
        audit_forward=False,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Client:
    server: Server
    channel: grpc.aio.Channel
    stub: auth_pb2_grpc.AuthServiceStub
    verifier: TokenVerifier
    inbox: _Inbox
    settings: Settings
    created: list = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def register(self, email_addr: str | None = None, org: str | None = None, password: str = PASSWORD):
        email_addr = email_addr or f"admin-{uuid.uuid4().hex[:8]}@lab.example"
        org = org or f"Lab {uuid.uuid4().hex[:8]}"
        user = await self.stub.Register(
            auth_pb2.RegisterRequest(email=email_addr, password=password, organization_name=org), timeout=10
        )
        return user

    async def login(self, email_addr: str, password: str = PASSWORD) -> auth_pb2.TokenPair:
        return await self.stub.Login(auth_pb2.LoginRequest(email=email_addr, password=password), timeout=10)

    async def signed_up(self):
        """(user, token pair) of a fresh org_admin."""
        user = await self.register()
        return user, await self.login(user.email)

    def platform_admin(self) -> str:
        addr = f"root-{uuid.uuid4().hex[:8]}@hemovision.example"
        outcome, _ = self.server.service.users.create_admin_sync(email=addr, password=PASSWORD)
        assert outcome == "created"
        return addr


async def _start(settings: Settings, redis_url: str, smtp: _Inbox, **server_args) -> Client:
    server = await create_server(settings, **server_args)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    verifier = TokenVerifier(AuthKeyProvider(f"127.0.0.1:{server.port}"), redis_url=redis_url)
    return Client(server, channel, auth_pb2_grpc.AuthServiceStub(channel), verifier, smtp, settings)


async def _stop(client: Client) -> None:
    await client.verifier.close()
    await client.channel.close()
    await client.server.stop(0)


@pytest.fixture
async def auth(runtime_url, redis_url, smtp):
    client = await _start(make_settings(runtime_url, redis_url, smtp.port), redis_url, smtp)
    yield client
    await _stop(client)


@pytest.fixture
async def start_auth(runtime_url, redis_url, smtp):
    """Starts auth servers (replicas on the test database) with settings overrides, stopped after the
    test: `client = await start_auth(lockout_threshold=3)`; `audit_sink=` goes to create_server."""
    clients: list[Client] = []

    async def start(audit_sink=None, **overrides) -> Client:
        settings = make_settings(runtime_url, redis_url, smtp.port, **overrides)
        client = await _start(settings, redis_url, smtp, audit_sink=audit_sink)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await _stop(client)


def md(token: str):
    return bearer_metadata(token)


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value
