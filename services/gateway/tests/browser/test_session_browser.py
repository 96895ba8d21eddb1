"""A browser session a script cannot steal, in a real browser: the page's CSP refuses an injected
inline script (and inline handler), the refresh token is in no place a script can read
(document.cookie, localStorage, sessionStorage), a reload keeps the user signed in through the
HttpOnly cookie, the profile lists the sessions and signs one out, sign-out clears the cookie, and
an admin sees a locked user and unlocks it. /docs and /redoc render under their own CSP.

On the fake system (default) auth is gateway_fakes' with sessions (session_fakes.SessionAuth);
against a running system set HV_E2E_BASE_URL (the lockout step then needs HV_E2E_ADMIN_*)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from playwright.sync_api import expect

import session_fakes

from test_browser import TIMEOUT, shot, sign_in

INJECT = """() => new Promise((resolve) => {
  const seen = [];
  document.addEventListener("securitypolicyviolation",
    (e) => seen.push({ directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample }));
  const s = document.createElement("script");
  s.textContent = "window.__injected = 'inline script ran'";
  document.body.appendChild(s);
  const holder = document.createElement("div");
  holder.innerHTML = '<img src="data:," onerror="window.__injected_handler = 1">';
  document.body.appendChild(holder);
  setTimeout(() => resolve({ seen, ran: window.__injected || null, handler: window.__injected_handler || null }), 1500);
})"""


@pytest.fixture(scope="module", autouse=True)
def _auth_with_sessions():
    """The fake system of this module serves auth with sessions and lockout (before `target`)."""
    mp = pytest.MonkeyPatch()
    session_fakes.install(mp)
    yield
    mp.undo()


def _user(target) -> tuple[str, str]:
    email, password = f"sess-{uuid.uuid4().hex[:8]}@lab.example", "session-password-1234"
    if target.fake:
        target.world.user("org_admin", email=email)
        target.world.passwords[email] = password
    else:
        with httpx.Client(base_url=target.base_url, timeout=30) as c:
            r = c.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                       "organization": f"E2E Sessions {uuid.uuid4().hex[:6]}"})
            assert r.status_code == 201, r.text
    return email, password


def _csp_errors(page) -> list[str]:
    return [e for e in page.errors if "Content Security Policy" in e]


def test_session_survives_reload_and_no_script_can_read_the_refresh_token(page, target, artifacts):
    base = target.base_url
    email, password = _user(target)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/login")) as login:
        sign_in(page, base, email, password)
    assert login.value.status == 200 and login.value.json()["refresh_token"] is None  # not even in the answer

    jar = {c["name"]: c for c in page.context.cookies()}
    refresh_name = next(n for n in jar if n.endswith("hv_refresh"))
    refresh = jar[refresh_name]
    assert refresh["httpOnly"] and refresh["sameSite"] == "Strict" and refresh["path"] == "/"
    csrf = jar[refresh_name.replace("hv_refresh", "hv_csrf")]
    assert not csrf["httpOnly"]
    readable = page.evaluate("""() => ({ cookie: document.cookie, local: JSON.stringify(localStorage),
                                         session: JSON.stringify(sessionStorage) })""")
    assert refresh["value"] not in json.dumps(readable)
    assert refresh_name not in readable["cookie"] and "hv_csrf=" in readable["cookie"]
    assert readable["local"] == "{}" and readable["session"] == "{}"  # no token at rest anywhere
    assert not page.errors, page.errors

    # An inline script and an inline handler that found their way into the page are refused.
    outcome = page.evaluate(INJECT)
    assert outcome["ran"] is None and outcome["handler"] is None, outcome
    directives = {v["directive"] for v in outcome["seen"]}
    assert {"script-src-elem", "script-src-attr"} <= directives, outcome
    page.errors.clear()  # the refusals were logged to the console, as they should be

    # A reload keeps the user signed in: the page asks for a new access token with the cookie.
    page.reload()
    expect(page.get_by_role("heading", name="Classify cells")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.context.cookies() and next(c for c in page.context.cookies()
                                           if c["name"] == refresh_name)["value"] != refresh["value"]  # rotated
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0

    # Profile: the sessions panel lists this session and another one, which it can sign out.
    if target.fake:
        with httpx.Client(base_url=base, timeout=30) as c:  # a second sign-in, from "another device"
            assert c.post("/api/v1/auth/login", json={"email": email, "password": password},
                          headers={"User-Agent": "OtherDevice/1.0"}).status_code == 200
    page.goto(f"{base}/#/profile")
    sessions = page.locator("#sessions tr")
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#sessions")).to_contain_text("this session", timeout=TIMEOUT)
    if target.fake:
        expect(sessions).to_have_count(2)
        other = sessions.filter(has_text="OtherDevice/1.0")
        other.get_by_role("button", name="Sign out").click()
        expect(page.locator("#toast")).to_contain_text("Session ended", timeout=TIMEOUT)
        expect(sessions).to_have_count(1)
    shot(page, artifacts, "30-profile-sessions")

    # Sign out: the cookie is gone, and a reload lands on the sign-in page.
    page.get_by_role("button", name="Sign out", exact=True).first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=TIMEOUT)
    assert not [c for c in page.context.cookies() if c["name"].endswith(("hv_refresh", "hv_csrf"))]
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=TIMEOUT)
    assert not page.errors, page.errors


def test_sign_out_everywhere_from_the_profile(page, target, artifacts):
    email, password = _user(target)
    sign_in(page, target.base_url, email, password)
    page.goto(f"{target.base_url}/#/profile")
    expect(page.locator("#sessions")).to_contain_text("this session", timeout=TIMEOUT)
    page.get_by_role("button", name="Sign out everywhere").click()  # the confirm() is accepted
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#toast")).to_contain_text("Signed out of 1 session", timeout=TIMEOUT)
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=TIMEOUT)
    assert not page.errors, page.errors


def _lock(target, email: str, seconds: int = 600) -> None:
    """Locks sign-in of `email`: on the fake system directly, on a real one by failing to sign in
    until auth locks the account (its lockout_threshold, 5 by default)."""
    if target.fake:
        target.world.locked[email] = seconds
        return
    with httpx.Client(base_url=target.base_url, timeout=30) as c:
        for _ in range(20):
            r = c.post("/api/v1/auth/login", json={"email": email, "password": "not the password"})
            if r.status_code == 429 and r.json()["error"]["code"] == "resource_exhausted":
                return
            assert r.status_code == 401, r.text
    raise AssertionError("20 failed sign-ins did not lock the account")


def test_admin_sees_a_locked_user_and_unlocks_it(page, target, artifacts):
    if target.fake:
        admin_email, admin_password = _user(target)
        admin = next(u for u in target.world.users.values() if u.email == admin_email)
        locked_email = f"locked-{uuid.uuid4().hex[:8]}@lab.example"
        target.world.user("lab_user", org=admin.organization_id, email=locked_email)
        target.world.passwords[locked_email] = "locked-password-1234"
    else:  # the platform admin sees every organization's users
        assert target.admin_email and target.admin_password, "set HV_E2E_ADMIN_EMAIL / HV_E2E_ADMIN_PASSWORD"
        admin_email, admin_password = target.admin_email, target.admin_password
        locked_email, _ = _user(target)
    _lock(target, locked_email)
    sign_in(page, target.base_url, admin_email, admin_password)
    page.goto(f"{target.base_url}/#/admin")
    row = page.locator("#users tr", has_text=locked_email)
    expect(row.locator(".badge")).to_contain_text("locked until", timeout=TIMEOUT)
    shot(page, artifacts, "31-admin-locked-user")
    row.get_by_role("button", name=f"Unlock {locked_email}").click()
    expect(page.locator("#toast")).to_contain_text("Unlocked", timeout=TIMEOUT)
    expect(page.locator("#users tr", has_text=locked_email).locator(".badge")).to_have_count(0)
    if target.fake:
        assert locked_email not in target.world.locked
    assert not page.errors, page.errors


def test_a_locked_sign_in_says_when_to_retry(page, target):
    email, password = _user(target)
    _lock(target, email, seconds=120)
    page.goto(f"{target.base_url}/#/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"try again in \d+ s"), timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_api_docs_render_under_their_own_csp(page, target):
    for path, text in (("/docs", "/api/v1/auth/sessions"), ("/redoc", "sign-out-everywhere")):
        response = page.goto(f"{target.base_url}{path}")
        assert "script-src 'self';" in response.headers["content-security-policy"]
        expect(page.get_by_text(text).first).to_be_attached(timeout=TIMEOUT)
    # Nothing of theirs is refused but Redoc's "API docs by Redocly" logo from its CDN (img-src),
    # which is meant: the docs load nothing from a third party.
    refused = [e for e in _csp_errors(page) if not ("img-src" in e and "https://cdn.redoc.ly/" in e)]
    assert not refused, page.errors
