"""Chromium for the e2e tests that drive the UI of the real system: the `browser` (module) and
`page` (per test) fixtures, and sign_in. A test module uses them by importing them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

CHROMIUM = os.environ.get("HV_E2E_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, system):
    """A fresh browser context on the shared system; page errors and console errors are collected
    in `page.errors`; every dialog is accepted (a prompt() with `page.prompt_answer`)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.prompt_answer = ""  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: msg.type == "error" and "Failed to load resource" not in msg.text
          and pg.errors.append(f"console: {msg.text}"))
    pg.on("dialog", lambda d: d.accept(pg.prompt_answer))
    yield pg
    context.close()


def sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/#/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Classify cells")).to_be_visible(timeout=TIMEOUT)
