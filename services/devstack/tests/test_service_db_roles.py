"""`make up` serves auth, history and training as their restricted runtime roles (docs/decisions.md
43, 55): each migrate step signs in as the stack's database owner, the auth server as
hemovision_auth_app, the history server as hemovision_history_app (INSERT/SELECT only on the audit
log), the training server and worker as hemovision_training_app, the retention purge's audit
deletions as hemovision_audit_retention (docs/history.md "Append-only")."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import urllib.request

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hemovision_auth.settings import Settings as AuthSettings
from hemovision_auth.tables import AUTH_APP_ROLE
from hemovision_devstack.plan import StackConfig, build_env, build_plan
from hemovision_devstack.readiness import grpc_ready
from hemovision_devstack.supervisor import Stack
from hemovision_history.settings import Settings as HistorySettings
from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE
from hemovision_training.settings import Settings as TrainingSettings
from hemovision_training.tables import TRAINING_APP_ROLE

ROLE_URLS = ("HV_HISTORY_RETENTION_DATABASE_URL",
             *(f"HV_{svc}_{kind}DATABASE_URL" for svc in ("AUTH", "HISTORY", "TRAINING") for kind in ("", "MIGRATE_")))


@pytest.fixture(autouse=True)
def _no_history_urls_from_the_shell(monkeypatch):
    for key in ROLE_URLS:
        monkeypatch.delenv(key, raising=False)


def _settings(cls, env: dict[str, str], monkeypatch):
    """A service's settings as a process with the stack's environment `env` reads them."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()


def test_history_serves_as_the_runtime_role_and_migrates_as_the_owner(tmp_path, monkeypatch):
    owner = "postgresql+psycopg2://postgres@127.0.0.1:5433/hv_somewhere"
    env = build_env(StackConfig(root=tmp_path, var_dir=tmp_path / "var", database_url=owner))
    settings = _settings(HistorySettings, env, monkeypatch)
    served = make_url(settings.database_url)
    assert served.username == HISTORY_APP_ROLE and served.password is None
    assert (served.host, served.port, served.database) == ("127.0.0.1", 5433, "hv_somewhere")
    assert settings.migrate_database_url == owner  # `migrate` uses it before database_url
    purge = make_url(settings.retention_database_url)
    assert purge.username == AUDIT_RETENTION_ROLE and purge.database == "hv_somewhere"
    # the one-off steps and every process get this environment: history's migrate step is among them
    steps, procs = build_plan(StackConfig(root=tmp_path, var_dir=tmp_path / "var"))
    assert any(argv[2:] == ["hemovision_history", "migrate"] for argv in steps)
    assert "history" in {p.name for p in procs}


def test_auth_and_training_serve_as_their_runtime_roles_and_migrate_as_the_owner(tmp_path, monkeypatch):
    """Auth's server, and training's server, worker and register-existing, read the runtime role's
    URL; each one's `migrate` the owner's."""
    owner = "postgresql+psycopg2://postgres@127.0.0.1:5433/hv_somewhere"
    env = build_env(StackConfig(root=tmp_path, var_dir=tmp_path / "var", database_url=owner))
    for cls, role in ((AuthSettings, AUTH_APP_ROLE), (TrainingSettings, TRAINING_APP_ROLE)):
        settings = _settings(cls, env, monkeypatch)
        served = make_url(settings.database_url)
        assert served.username == role and served.password is None, cls
        assert (served.host, served.port, served.database) == ("127.0.0.1", 5433, "hv_somewhere")
        assert settings.migrate_database_url == owner
    steps, procs = build_plan(StackConfig(root=tmp_path, var_dir=tmp_path / "var", workers=True))
    assert {"auth", "training", "training-worker"} <= {p.name for p in procs}
    for service in ("auth", "training"):
        assert any(argv[2:] == [f"hemovision_{service}", "migrate"] for argv in steps)


def test_urls_set_in_the_environment_win(tmp_path, monkeypatch):
    """A cluster with password authentication: the roles' URLs (with their passwords) come from
    the environment, like every other setting README lists."""
    mine = "postgresql+psycopg2://hemovision_history_app:s3cret@db.internal/hemovision"
    monkeypatch.setenv("HV_HISTORY_DATABASE_URL", mine)
    env = build_env(StackConfig(root=tmp_path, var_dir=tmp_path / "var"))
    assert env["HV_HISTORY_DATABASE_URL"] == mine
    assert make_url(env["HV_HISTORY_RETENTION_DATABASE_URL"]).username == AUDIT_RETENTION_ROLE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(stack: Stack, name: str, tmp_path, **extra_env: str) -> subprocess.Popen:
    """The plan's process `name`, started as the supervisor starts it; returns once it is SERVING."""
    proc = next(p for p in stack.procs if p.name == name)
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(proc.argv, env={**stack.env, **proc.env, **extra_env}, stdout=out,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not asyncio.run(grpc_ready(stack.cfg.addr(name), proc.health[2])):
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{name} not SERVING after 90 s"
        time.sleep(0.5)
    return server


def test_the_stacks_processes_connect_as_their_runtime_roles(postgres_url, tmp_path, redis_url):
    """On a real database: the plan's migrate steps (the stack's environment) create the schemas as
    the owner, and the plan's auth, history and training processes, started as the supervisor
    starts them, hold their connections as their runtime roles."""
    cfg = StackConfig(root=tmp_path, var_dir=tmp_path / "var", database_url=postgres_url, redis_url=redis_url,
                      port_overrides={name: _free_port() for name in ("auth", "history", "training")})
    stack = Stack(cfg)
    for service in ("auth", "history", "training"):
        step = next(argv for argv in stack.steps if argv[2:] == [f"hemovision_{service}", "migrate"])
        done = subprocess.run(step, env=stack.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
    owner = make_url(postgres_url).username
    engine = sa.create_engine(postgres_url)
    servers: list[subprocess.Popen] = []
    try:
        with engine.connect() as conn:
            owners = set(conn.execute(sa.text(
                "SELECT tableowner FROM pg_tables WHERE schemaname IN ('auth', 'history', 'training')")).scalars())
        assert owners == {owner}

        metrics_port = _free_port()
        servers.append(_start(stack, "history", tmp_path, HV_HISTORY_METRICS_PORT=str(metrics_port)))
        # a scrape runs the batch gauges' queries on the server's pool
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
            assert b"hemovision_batches" in reply.read()
        # auth creates its first signing key at start; training's registry is read by a list
        servers.append(_start(stack, "auth", tmp_path, HV_AUTH_METRICS_PORT=str(_free_port())))
        servers.append(_start(stack, "training", tmp_path, HV_TRAINING_METRICS_PORT=str(_free_port())))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM auth.signing_keys")).scalar() == 1
            users = set(conn.execute(sa.text(
                "SELECT usename FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalars())
        assert users == {HISTORY_APP_ROLE, AUTH_APP_ROLE, TRAINING_APP_ROLE}
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
        engine.dispose()
