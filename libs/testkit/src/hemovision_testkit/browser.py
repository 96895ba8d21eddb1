"""Headless Chromium (Debian's, driven by Playwright) for the browser tests: the fake-peer suite
(services/gateway/tests/browser) and the real-system ones (tests/e2e). One launch and one page
set-up, so both suites see pages the same way: page and console errors collected in
`page.errors`, every dialog accepted (a prompt() answered with `page.prompt_answer`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("HV_E2E_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser; AssertionError with the fix when Chromium is not installed."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page(browser: Any, *, route: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """A page in a fresh 1280x900 context (`route`, if given, sees every request)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    if route is not None:
        context.route("**/*", route)
    pg = context.new_page()
    pg.errors = []
    pg.prompt_answer = ""
    pg.on("pageerror", lambda exc: pg.errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: msg.type == "error" and "Failed to load resource" not in msg.text
          and pg.errors.append(f"console: {msg.text}"))
    pg.on("dialog", lambda d: d.accept(pg.prompt_answer))
    try:
        yield pg
    finally:
        context.close()


TIMEOUT_MS = 60_000  # a step on a shared 2-core machine beside the whole system


def sign_in(page: Any, base: str, email: str, password: str) -> None:
    """Signs in through the login form and waits for the upload page."""
    from playwright.sync_api import expect

    page.goto(f"{base}/#/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Classify cells")).to_be_visible(timeout=TIMEOUT_MS)


# The admin page's training status line (#js): record every text it shows, in order (the stream
# may set it several times within one task: each setting is a record with its own new text node).
RECORD_JOB_LINES = """() => {
    window.__jobLines = [];
    new MutationObserver((records) => {
        for (const r of records) {
            if (r.type === "childList" && r.target.id === "js") {
                for (const n of r.addedNodes) window.__jobLines.push(n.textContent);
            } else if (r.type === "characterData" && r.target.parentElement && r.target.parentElement.id === "js") {
                window.__jobLines.push(r.target.data);
            }
        }
    }).observe(document.getElementById("watch"), { childList: true, subtree: true, characterData: true });
}"""
JOB_LINES = """() => window.__jobLines"""
