"""`make up` serves history as its restricted runtime role: the migrate step signs in as the
stack's database owner, the history server as hemovision_history_app (INSERT/SELECT only on the
audit log), the retention purge's audit deletions as hemovision_audit_retention (docs/history.md
"Append-only")."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import urllib.request

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hemovision_devstack.plan import StackConfig, build_env, build_plan
from hemovision_devstack.readiness import grpc_ready
from hemovision_devstack.supervisor import Stack
from hemovision_history.settings import Settings as HistorySettings
from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE

ROLE_URLS = ("HV_HISTORY_DATABASE_URL", "HV_HISTORY_MIGRATE_DATABASE_URL", "HV_HISTORY_RETENTION_DATABASE_URL")


@pytest.fixture(autouse=True)
def _no_history_urls_from_the_shell(monkeypatch):
    for key in ROLE_URLS:
        monkeypatch.delenv(key, raising=False)


def _history_settings(env: dict[str, str], monkeypatch) -> HistorySettings:
    """History's settings as a process with the stack's environment `env` reads them."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return HistorySettings()


def test_history_serves_as_the_runtime_role_and_migrates_as_the_owner(tmp_path, monkeypatch):
    owner = "postgresql+psycopg2://postgres@127.0.0.1:5433/hv_somewhere"
    env = build_env(StackConfig(root=tmp_path, var_dir=tmp_path / "var", database_url=owner))
    settings = _history_settings(env, monkeypatch)
    served = make_url(settings.database_url)
    assert served.username == HISTORY_APP_ROLE and served.password is None
    assert (served.host, served.port, served.database) == ("127.0.0.1", 5433, "hv_somewhere")
    assert settings.migrate_database_url == owner  # `migrate` uses it before database_url
    purge = make_url(settings.retention_database_url)
    assert purge.username == AUDIT_RETENTION_ROLE and purge.database == "hv_somewhere"
    assert env["HV_DATABASE_URL"] == owner  # auth and training keep the owner's URL
    # the one-off steps and every process get this environment: history's migrate step is among them
    steps, procs = build_plan(StackConfig(root=tmp_path, var_dir=tmp_path / "var"))
    assert any(argv[2:] == ["hemovision_history", "migrate"] for argv in steps)
    assert "history" in {p.name for p in procs}


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


def test_the_stacks_history_process_connects_as_the_runtime_role(postgres_url, tmp_path, redis_url):
    """On a real database: the plan's migrate step (the stack's environment) creates the schema as
    the owner, and the plan's history process, started as the supervisor starts it, holds its
    connections as hemovision_history_app."""
    cfg = StackConfig(root=tmp_path, var_dir=tmp_path / "var", database_url=postgres_url, redis_url=redis_url,
                      port_overrides={"history": _free_port()})
    stack = Stack(cfg)
    step = next(argv for argv in stack.steps if argv[2:] == ["hemovision_history", "migrate"])
    done = subprocess.run(step, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    owner = make_url(postgres_url).username
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            owners = set(conn.execute(sa.text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'history'")).scalars())
        assert owners == {owner}

        proc = next(p for p in stack.procs if p.name == "history")
        metrics_port = _free_port()
        env = {**stack.env, **proc.env, "HV_HISTORY_METRICS_PORT": str(metrics_port)}
        log = tmp_path / "history.log"
        with log.open("wb") as out:
            server = subprocess.Popen(proc.argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not asyncio.run(grpc_ready(cfg.addr("history"), proc.health[2])):
                assert server.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "history not SERVING after 60 s"
                time.sleep(0.5)
            # a scrape runs the batch gauges' queries on the server's pool
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
                assert b"hemovision_batches" in reply.read()
            with engine.connect() as conn:
                users = set(conn.execute(sa.text(
                    "SELECT usename FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")).scalars())
            assert users == {HISTORY_APP_ROLE}
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        engine.dispose()

