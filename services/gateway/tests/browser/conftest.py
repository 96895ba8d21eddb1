"""Browser tests (Playwright driving Debian's chromium).

    HV_E2E_BASE_URL=http://127.0.0.1:8000 pytest services/gateway/tests/browser

Against a running system: set HV_E2E_BASE_URL; for the e-mail step either configure auth's
SMTP to HV_E2E_SMTP_PORT (the test listens there and follows the link) or leave it unset
(the step is then reported as not exercised); the admin step signs in with
HV_E2E_ADMIN_EMAIL / HV_E2E_ADMIN_PASSWORD (create one with `hemovision admin create`).
Without HV_E2E_BASE_URL the tests start the gateway here on fake peers.
Screenshots of every page go to test-artifacts/browser/ (git-ignored)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hemovision_testkit.browser import chromium
from hemovision_testkit.browser import page as browser_page

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))



@dataclass
class Target:
    base_url: str
    admin_email: str | None
    admin_password: str | None
    fake: bool
    world: object | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_fake_system(tmp: Path) -> tuple[Target, callable]:
    import uvicorn

    from gateway_fakes import SERVICE_SECRET, World, start_fakes

    from hemovision_gateway import Settings, create_app

    world = World()
    loop = asyncio.new_event_loop()
    state: dict = {}
    ready = threading.Event()
    port = _free_port()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server, grpc_port, _ = loop.run_until_complete(start_fakes(world))
        addr = f"127.0.0.1:{grpc_port}"
        settings = Settings(auth_addr=addr, inference_addr=addr, history_addr=addr,
                            reports_addr=addr, training_addr=addr, redis_url="redis://127.0.0.1:6379/12",
                            upload_dir=str(tmp / "uploads"), batch_inline=True, service_secret=SERVICE_SECRET)
        app = create_app(settings, verifier=world.factory.verifier())
        web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        state["web"], state["grpc"] = web, server
        ready.set()
        loop.run_until_complete(web.serve())
        loop.run_until_complete(server.stop(0))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    for _ in range(200):
        if state["web"].started:
            break
        time.sleep(0.05)
    admin, _ = world.user("platform_admin", email="root@hemovision.example")
    world.passwords = getattr(world, "passwords", {})
    world.passwords[admin.email] = "admin-password-123"

    def stop() -> None:
        state["web"].should_exit = True
        thread.join(timeout=10)

    return Target(f"http://127.0.0.1:{port}", admin.email, "admin-password-123", True, world), stop


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    base = os.environ.get("HV_E2E_BASE_URL")
    if base:
        yield Target(base.rstrip("/"), os.environ.get("HV_E2E_ADMIN_EMAIL"), os.environ.get("HV_E2E_ADMIN_PASSWORD"),
                     False)
        return
    t, stop = _start_fake_system(tmp_path_factory.mktemp("e2e"))
    yield t
    stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("HV_E2E_ARTIFACTS", REPO / "test-artifacts" / "browser"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, artifacts, target):
    external: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith(target.base_url) or url.startswith(("blob:", "data:")):
            route.continue_()
        else:  # no CDN, no third party: every asset must come from the gateway
            external.append(url)
            route.abort()

    with browser_page(browser, route=only_local) as pg:
        yield pg
    assert not external, f"requests outside the gateway: {external}"
