"""The whole system, started exactly as `make up` starts it, on shifted ports and its own database."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hemovision_database import drop_database

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "pbc_128"
PORT_OFFSET = int(os.environ.get("HV_E2E_PORT_OFFSET", "1000"))
POSTGRES = os.environ.get("HV_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("HV_TEST_REDIS", "redis://127.0.0.1:6379")
# Port offsets of the other stacks that run on this machine: bench/serving (11000, its quiet twin
# 12000) and tests/reliability (14000). The highest port of a stack is 50056 + offset.
OTHER_STACKS = frozenset({11000, 12000, 14000})
MAX_OFFSET = 15000


def redis_db(offset: int) -> int:
    """One Redis database per port offset: two stacks side by side (another offset, a CI clone)
    must not share Celery queues, or one stack's worker takes the other's batch items."""
    return 1 + (offset // 1000) % 15


# The shared stack of the whole run (the `system` fixture).
REDIS_DB = int(os.environ.get("HV_E2E_REDIS_DB", str(redis_db(PORT_OFFSET))))


def second_port_offset(shared: int = PORT_OFFSET) -> int:
    """The offset of a test's own second stack (tracing's): the shared one + 7000 (8000 by default),
    else the next thousand that is neither the shared stack's nor another stack's on this machine."""
    for k in range(7, 7 + MAX_OFFSET // 1000):
        candidate = 1000 + (shared - 1000 + k * 1000) % MAX_OFFSET
        if candidate != shared and candidate not in OTHER_STACKS and redis_db(candidate) != redis_db(shared):
            return candidate
    raise AssertionError(f"no free port offset beside {shared}")


@dataclass
class RunningSystem:
    base_url: str
    process: subprocess.Popen[bytes]
    var_dir: Path
    port_offset: int
    log: Path
    database_url: str
    model_base: Path
    smtp_port: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_base(tmp: Path) -> Path:
    """Two published versions of the shipped model, so activation and rollback have somewhere to go."""
    shipped = sorted((ROOT / "models" / "hemovision").iterdir(), key=lambda p: int(p.name))[-1]
    base = tmp / "models"
    for version in (1, 2):
        shutil.copytree(shipped, base / "hemovision" / str(version))
    return base


# test_system.py ends the shared stack (SIGTERM: every process must go): it stays the last test on it
STOPS_THE_SHARED_STACK = "test_system.py::test_zz_stop_leaves_no_process"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_stack_last: runs after every other test on the shared stack (it "
                                       "changes what the stack holds in a way the others must not see, e.g. "
                                       "registers a model version)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)
    # shared_stack_last tests after every other, then the one that stops the shared stack (stable: the rest
    # keep their order)
    items.sort(key=lambda item: 2 if item.nodeid.endswith(STOPS_THE_SHARED_STACK)
               else 1 if item.get_closest_marker("shared_stack_last") else 0)


@contextmanager
def start_system(tmp_path_factory: pytest.TempPathFactory, offset: int, extra_env: dict[str, str] | None = None, *,
                 name: str = "", redis_database: int | None = None) -> Iterator[RunningSystem]:
    """The whole system, started as `make up` starts it (`hemovision_devstack up`), on ports + `offset`,
    its own PostgreSQL database (dropped afterwards) and Redis database (`redis_db(offset)`), with
    `extra_env` on top of the e2e settings; `name` tells its directories and database apart; stopped
    (SIGTERM, then SIGKILL of its process group) on exit."""
    assert 0 <= offset <= MAX_OFFSET, f"port offset {offset} out of range (ports + offset must stay below 65536)"
    prefix = f"hv-{name}" if name else "hv"
    var_dir = tmp_path_factory.mktemp(f"{prefix}-var")
    model_base = _model_base(tmp_path_factory.mktemp(f"{prefix}-models"))
    database_url = f"{POSTGRES}/hv_e2e_{name + '_' if name else ''}{uuid.uuid4().hex[:10]}"
    log = var_dir / "devstack.out"
    smtp_port = _free_port()
    db = redis_db(offset) if redis_database is None else redis_database
    cmd = [
        sys.executable, "-m", "hemovision_devstack", "up",
        "--port-offset", str(offset), "--database-url", database_url,
        "--redis-url", f"{REDIS}/{db}", "--var-dir", str(var_dir), "--model-base", str(model_base),
    ]
    # Auth mails through SMTP to a port the browser test listens on, and follows the link.
    env = {**os.environ, "HV_AUTH_MAIL_BACKEND": "smtp", "HV_AUTH_SMTP_HOST": "127.0.0.1",
           "HV_AUTH_SMTP_PORT": str(smtp_port),
           # the whole suite signs up dozens of labs from one IP within minutes; a lab's users
           # would come from many (the anonymous per-IP limit stays 60/min in production)
           "HV_GATEWAY_RATE_LIMIT_AUTH_REQUESTS": "1000", **(extra_env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    base_url = f"http://127.0.0.1:{8000 + offset}"
    deadline = time.monotonic() + 420
    try:
        while True:
            text = log.read_text(errors="replace")
            if "HemoVision is up" in text:
                break
            if proc.poll() is not None:
                pytest.fail(f"`hemovision up` exited with {proc.returncode}:\n{text[-4000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"`hemovision up` not ready after 420 s:\n{text[-4000:]}", pytrace=False)
            time.sleep(1)
        yield RunningSystem(base_url, proc, var_dir, offset, log, database_url, model_base, smtp_port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        drop_database(database_url)


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The run's one shared stack, on HV_E2E_PORT_OFFSET (1000)."""
    with start_system(tmp_path_factory, PORT_OFFSET, redis_database=REDIS_DB) as running:
        yield running


@pytest.fixture(scope="session")
def system_starter() -> Callable[..., AbstractContextManager[RunningSystem]]:
    """start_system, for a test that needs a stack of its own (on `second_offset`)."""
    return start_system


@pytest.fixture(scope="session")
def second_offset() -> int:
    """The port offset of a test's own second stack (second_port_offset())."""
    return second_port_offset(PORT_OFFSET)


@pytest.fixture(scope="session")
def client(system: RunningSystem) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.base_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def test_images() -> list[tuple[str, Path]]:
    """(label, path) of a few PBC images from the test split."""
    if not (DATA / "splits.csv").exists():
        pytest.fail(f"the PBC data set is required at {DATA}", pytrace=False)
    picked: dict[str, Path] = {}
    with (DATA / "splits.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test" and row["label"] not in picked:
                picked[row["label"]] = DATA / row["path"]
    return sorted(picked.items())


@pytest.fixture
def platform_admin(system: RunningSystem) -> Callable[[], tuple[str, str]]:
    """platform_admin() creates a platform_admin with the CLI, as an operator would: (e-mail, password)."""

    def create() -> tuple[str, str]:
        email, password = f"root-{uuid.uuid4().hex[:6]}@example.org", "platform admin password"
        created = subprocess.run(
            [sys.executable, "-m", "hemovision_auth", "create-admin", "--email", email, "--password-stdin"],
            input=password, text=True, capture_output=True, cwd=ROOT, timeout=120,
            env={**os.environ, "HV_DATABASE_URL": system.database_url, "HV_ENV": "development"},
        )
        assert created.returncode == 0, created.stderr
        return email, password

    return create


@pytest.fixture
def new_lab(client: httpx.Client) -> Callable[[], dict[str, str]]:
    """new_lab() registers a lab just for this test and returns its org_admin's bearer headers."""

    def sign_up() -> dict[str, str]:
        email, password = f"lab-{uuid.uuid4().hex[:8]}@example.org", f"Tz-{uuid.uuid4().hex}"
        reply = client.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                            "organization": f"Lab {uuid.uuid4().hex[:6]}"})
        assert reply.status_code == 201, reply.text
        reply = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    return sign_up


# Chromium fixtures for the tests that drive the UI of the real system (browser_support.py; the
# run imports in importlib mode, so this folder is put on the path for it and the test modules).
sys.path.insert(0, str(Path(__file__).parent))
from browser_support import browser, page  # noqa: E402,F401
