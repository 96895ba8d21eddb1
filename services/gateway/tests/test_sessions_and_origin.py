"""A browser session a script cannot steal, and the real client behind trusted proxies:
client IP / TLS from X-Forwarded-* only from trusted proxies, forwarded on gRPC metadata and used
for the anonymous rate limit; the refresh token in an HttpOnly cookie with a CSRF check; the
security headers; the session, sign-out-everywhere and unlock routes; lockout -> 429 Retry-After."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

import httpx
import pytest
import redis.asyncio as aioredis

import session_fakes
from gateway_fakes import auth, start_fakes

from hemovision_gateway import create_app
from hemovision_gateway.clients import Clients
from hemovision_gateway.security import (
    APP_CSP, DOCS_CSP, csrf_token_for, parse_networks, resolve_client, resolve_tls,
)

PASSWORD = "long enough pw"
PROXY = "10.9.0.2"


@pytest.fixture
async def peers(world, monkeypatch):
    session_fakes.install(monkeypatch)
    server, port, hs = await start_fakes(world)
    yield f"127.0.0.1:{port}", hs
    await server.stop(0)


@pytest.fixture
def gateway(settings, world):
    """gateway(peer=..., https=..., **settings overrides) -> an httpx client on a fresh app."""

    @asynccontextmanager
    async def make(peer: str = "192.0.2.10", https: bool = False, **overrides):
        s = settings.model_copy(update=overrides)
        clients = Clients.connect(s)
        r = aioredis.Redis.from_url(s.redis_url)
        app = create_app(s, clients, verifier=world.factory.verifier(redis=r), redis=r)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(peer, 4321))
            base = "https://gw.example" if https else "http://gw.example"
            async with httpx.AsyncClient(transport=transport, base_url=base) as c:
                yield c
        await clients.close()
        await r.aclose()

    return make


def user_with_password(world, role="lab_user", email=None):
    u, token = world.user(role, email=email)
    world.passwords = getattr(world, "passwords", {})
    world.passwords[u.email] = PASSWORD
    return u, token


def random_ip() -> str:
    return f"198.18.{random.randint(0, 255)}.{random.randint(1, 254)}"


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header parsed, by cookie name (with its attributes)."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        c = SimpleCookie()
        c.load(header)
        for name in c:
            out[name] = (c[name], header)
    return out


# ---------- client IP behind trusted proxies ----------

def test_resolve_client_walks_forwarded_for_from_the_right():
    trusted = parse_networks(["10.9.0.0/16", "fd00::/8"])
    # nobody trusted: the header is never read
    assert resolve_client("10.9.0.2", ["203.0.113.5"], ()) == "10.9.0.2"
    # an untrusted peer cannot spoof
    assert resolve_client("192.0.2.1", ["203.0.113.5"], trusted) == "192.0.2.1"
    # trusted proxy: the hop it saw
    assert resolve_client("10.9.0.2", ["203.0.113.5"], trusted) == "203.0.113.5"
    # a client-written entry left of the first untrusted hop is ignored; trusted hops are skipped
    assert resolve_client("10.9.0.2", ["6.6.6.6, 203.0.113.5, 10.9.0.7"], trusted) == "203.0.113.5"
    assert resolve_client("10.9.0.2", ["6.6.6.6", "203.0.113.5,10.9.0.7"], trusted) == "203.0.113.5"
    # ports, brackets, IPv6, IPv4-mapped
    assert resolve_client("10.9.0.2", ["203.0.113.5:5555"], trusted) == "203.0.113.5"
    assert resolve_client("fd00::1", ['"[2001:db8::7]:443"'], trusted) == "2001:db8::7"
    assert resolve_client("::ffff:10.9.0.2", ["203.0.113.9"], trusted) == "203.0.113.9"
    # garbage stops the walk at the last address a trusted proxy vouched for
    assert resolve_client("10.9.0.2", ["evil, 10.9.0.7"], trusted) == "10.9.0.7"
    assert resolve_client("10.9.0.2", [], trusted) == "10.9.0.2"
    assert resolve_client("", ["203.0.113.5"], trusted) == "unknown"
    # TLS: own scheme, or a trusted proxy's X-Forwarded-Proto only
    assert resolve_tls("192.0.2.1", "https", None, ())
    assert not resolve_tls("192.0.2.1", "http", "https", trusted)
    assert resolve_tls("10.9.0.2", "http", "https", trusted)
    assert not resolve_tls("10.9.0.2", "http", "http, https", trusted)


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(gateway, world):
    u, _ = user_with_password(world)
    async with gateway(peer="192.0.2.10") as c:  # default: no trusted proxies
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD},
                         headers={"X-Forwarded-For": "203.0.113.66", "User-Agent": "Spoofer/1.0",
                                  "X-Forwarded-Proto": "https"})
        assert r.status_code == 200, r.text
        assert "strict-transport-security" not in r.headers
    assert world.origins[-1] == ("Login", "192.0.2.10", "Spoofer/1.0")
    async with gateway(peer="192.0.2.10", trusted_proxies=[f"{PROXY}/32"]) as c:  # a peer that is not the proxy
        await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD},
                     headers={"X-Forwarded-For": "203.0.113.66"})
    assert world.origins[-1][1] == "192.0.2.10"


async def test_trusted_proxy_chain_is_honoured_on_every_outgoing_call(gateway, world):
    u, _ = user_with_password(world)
    async with gateway(peer=PROXY, trusted_proxies=["10.9.0.0/16"]) as c:
        xff = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.9.0.7", "User-Agent": "Browser/2.0",
               "X-Forwarded-Proto": "https"}
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD}, headers=xff)
        assert r.status_code == 200, r.text
        assert r.headers["strict-transport-security"] == "max-age=31536000"  # TLS at the proxy
        token = r.json()["access_token"]
        assert (await c.get("/api/v1/me", headers={**xff, **auth(token)})).status_code == 200
        sessions = (await c.get("/api/v1/auth/sessions", headers={**xff, **auth(token)})).json()["items"]
    assert ("Login", "203.0.113.5", "Browser/2.0") in world.origins
    assert ("GetMe", "203.0.113.5", "Browser/2.0") in world.origins  # bearer metadata carries it too
    assert sessions[0]["client_ip"] == "203.0.113.5" and sessions[0]["user_agent"] == "Browser/2.0"


async def test_two_clients_behind_the_proxy_get_separate_login_buckets(gateway, world):
    u, _ = user_with_password(world)
    a, b = random_ip(), random_ip()
    body = {"email": u.email, "password": PASSWORD}
    async with gateway(peer=PROXY, trusted_proxies=[f"{PROXY}/32"], rate_limit_auth_requests=2) as c:
        for _ in range(2):
            assert (await c.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": a})).status_code == 200
        limited = await c.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": a})
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # the other client behind the same proxy has its own bucket
        assert (await c.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": b})).status_code == 200
    # without trust, both are the proxy: one bucket
    async with gateway(peer=random_ip(), rate_limit_auth_requests=2) as c:
        codes = [(await c.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": ip})).status_code
                 for ip in (random_ip(), random_ip(), random_ip())]
    assert codes == [200, 200, 429]


# ---------- the refresh token in an HttpOnly cookie ----------

async def test_browser_session_keeps_the_refresh_token_in_an_httponly_cookie(gateway, world):
    u, _ = user_with_password(world)
    async with gateway() as c:
        own = {"Origin": "http://gw.example", "X-HV-Session": "cookie"}
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD}, headers=own)
        assert r.status_code == 200, r.text
        assert r.json()["refresh_token"] is None and r.json()["access_token"]
        assert r.headers["cache-control"] == "no-store"
        cookies = set_cookies(r)
        refresh, header = cookies["hv_refresh"]
        assert world.sessions and refresh.value in {s.refresh_token for s in world.sessions.values()}
        assert "httponly" in header.lower() and "samesite=strict" in header.lower() and "path=/" in header.lower()
        assert "secure" not in header.lower()  # plain HTTP (development)
        csrf, csrf_header = cookies["hv_csrf"]
        assert "httponly" not in csrf_header.lower() and csrf.value == csrf_token_for(refresh.value)

        # refresh with the cookie needs our Origin and the CSRF token
        no_csrf = await c.post("/api/v1/auth/refresh", headers=own)
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
        wrong = await c.post("/api/v1/auth/refresh", headers={**own, "X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        foreign = await c.post("/api/v1/auth/refresh", headers={"X-HV-Session": "cookie", "Origin": "https://evil.example",
                                                                 "X-CSRF-Token": csrf.value})
        assert foreign.status_code == 403
        no_origin = await c.post("/api/v1/auth/refresh", headers={"X-HV-Session": "cookie", "X-CSRF-Token": csrf.value})
        assert no_origin.status_code == 403
        ok = await c.post("/api/v1/auth/refresh", headers={**own, "X-CSRF-Token": csrf.value})
        assert ok.status_code == 200, ok.text
        assert ok.json()["refresh_token"] is None
        rotated = set_cookies(ok)["hv_refresh"][0].value
        assert rotated != refresh.value and c.cookies.get("hv_refresh") == rotated
        # the old CSRF token belonged to the spent refresh token
        stale = await c.post("/api/v1/auth/refresh", headers={**own, "X-CSRF-Token": csrf.value})
        assert stale.status_code == 403
        new_csrf = c.cookies.get("hv_csrf")
        access = ok.json()["access_token"]

        # logout: the cookie's family is revoked and both cookies are cleared
        out = await c.post("/api/v1/auth/logout", headers={**own, **auth(access), "X-CSRF-Token": new_csrf})
        assert out.status_code == 204
        assert f"logout:{rotated}" in world.calls
        cleared = set_cookies(out)
        assert cleared["hv_refresh"][0]["max-age"] == "0" and cleared["hv_csrf"][0]["max-age"] == "0"
        assert not c.cookies.get("hv_refresh")
        gone = await c.post("/api/v1/auth/refresh", headers={**own, "X-CSRF-Token": new_csrf})
        assert gone.status_code == 401


async def test_a_spent_cookie_is_cleared_and_login_csrf_is_refused(gateway, world):
    u, _ = user_with_password(world)
    async with gateway() as c:
        own = {"Origin": "http://gw.example", "X-HV-Session": "cookie"}
        # a cross-site page cannot sign the browser in (login CSRF) in cookie mode
        evil = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD},
                            headers={"X-HV-Session": "cookie", "Origin": "https://evil.example"})
        assert evil.status_code == 403 and not set_cookies(evil)
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD}, headers=own)
        for s in world.sessions.values():
            s.ended = True  # revoked elsewhere
        spent = await c.post("/api/v1/auth/refresh", headers={**own, "X-CSRF-Token": c.cookies.get("hv_csrf")})
        assert spent.status_code == 401 and set_cookies(spent)["hv_refresh"][0]["max-age"] == "0"
        assert r.status_code == 200


async def test_over_tls_the_cookies_are_host_prefixed_and_secure(gateway, world):
    u, _ = user_with_password(world)
    async with gateway(peer=PROXY, trusted_proxies=[f"{PROXY}/32"]) as c:
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD},
                         headers={"X-HV-Session": "cookie", "Origin": "https://gw.example",
                                  "X-Forwarded-Proto": "https"})
        assert r.status_code == 200, r.text
        cookies = set_cookies(r)
        assert set(cookies) == {"__Host-hv_refresh", "__Host-hv_csrf"}
        header = cookies["__Host-hv_refresh"][1].lower()
        assert "secure" in header and "httponly" in header and "path=/" in header and "domain" not in header
        # an un-prefixed cookie (planted over plain HTTP or by a sibling host) is not read under TLS
        plain = await c.post("/api/v1/auth/refresh",
                             headers={"X-HV-Session": "cookie", "Origin": "https://gw.example",
                                      "X-Forwarded-Proto": "https", "Cookie": "hv_refresh=planted",
                                      "X-CSRF-Token": csrf_token_for("planted")})
        assert plain.status_code == 401


async def test_api_clients_keep_the_refresh_token_in_json(gateway, world):
    u, _ = user_with_password(world)
    async with gateway() as c:
        r = await c.post("/api/v1/auth/login", json={"email": u.email, "password": PASSWORD})
        assert r.status_code == 200 and r.json()["refresh_token"].startswith("hvr_")
        assert not set_cookies(r)
        ref = await c.post("/api/v1/auth/refresh", json={"refresh_token": r.json()["refresh_token"]})
        assert ref.status_code == 200 and ref.json()["refresh_token"].startswith("hvr_") and not set_cookies(ref)
        missing = await c.post("/api/v1/auth/refresh", json={})
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "validation_error"
        bad = await c.post("/api/v1/auth/refresh", json={"refresh_token": "hvr_nope"})
        assert bad.status_code == 401 and not set_cookies(bad)


# ---------- security headers ----------

async def test_security_headers_on_every_answer(gateway, world):
    _, token = world.user("lab_user")
    async with gateway() as c:
        answers = [await c.get("/"), await c.get("/static/app.js"), await c.get("/api/v1/me", headers=auth(token)),
                   await c.get("/api/v1/me"), await c.get("/nope"), await c.get("/openapi.json"),
                   await c.post("/api/v1/auth/login", content=b"x" * (2 * 1024 * 1024),
                                headers={"Content-Type": "application/json"})]
        assert [a.status_code for a in answers] == [200, 200, 200, 401, 404, 200, 413]
        for a in answers:
            assert a.headers["content-security-policy"] == APP_CSP
            assert a.headers["x-content-type-options"] == "nosniff"
            assert a.headers["referrer-policy"] == "no-referrer"
            assert a.headers["x-frame-options"] == "DENY"
            assert "strict-transport-security" not in a.headers
        for path in ("/docs", "/redoc"):
            doc = await c.get(path)
            assert doc.headers["content-security-policy"] == DOCS_CSP
            assert "<script>" not in doc.text  # no inline script: script-src 'self' holds there too
        assert "'unsafe-inline'" not in APP_CSP and "script-src 'self';" in DOCS_CSP
        assert (await c.get("/static-docs/swagger-init.js")).status_code == 200
    async with gateway(https=True) as c:  # TLS terminated by the gateway itself
        assert (await c.get("/")).headers["strict-transport-security"] == "max-age=31536000"


# ---------- sessions, sign out everywhere, unlock, lockout ----------

async def test_sessions_list_revoke_and_sign_out_everywhere(gateway, world):
    u, _ = user_with_password(world)
    async with gateway() as c:
        login = {"email": u.email, "password": PASSWORD}
        first = (await c.post("/api/v1/auth/login", json=login, headers={"User-Agent": "Phone/1"})).json()
        second = (await c.post("/api/v1/auth/login", json=login, headers={"User-Agent": "Desk/1"})).json()
        listed = await c.get("/api/v1/auth/sessions", headers=auth(second["access_token"]))
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [s["user_agent"] for s in items] == ["Desk/1", "Phone/1"]
        assert [s["current"] for s in items] == [True, False]
        assert set(items[0]) == {"id", "created_at", "last_used_at", "client_ip", "user_agent", "current"}
        assert items[0]["created_at"].endswith("Z")
        # end the phone's session: its refresh token stops working
        gone = await c.delete(f"/api/v1/auth/sessions/{items[1]['id']}", headers=auth(second["access_token"]))
        assert gone.status_code == 204
        assert (await c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).status_code == 401
        again = await c.delete(f"/api/v1/auth/sessions/{items[1]['id']}", headers=auth(second["access_token"]))
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
        too_long = await c.delete("/api/v1/auth/sessions/" + "x" * 101, headers=auth(second["access_token"]))
        assert too_long.status_code == 422
        # someone else's session is not found
        other, _ = user_with_password(world)
        theirs = (await c.post("/api/v1/auth/login", json={"email": other.email, "password": PASSWORD})).json()
        their_id = (await c.get("/api/v1/auth/sessions", headers=auth(theirs["access_token"]))).json()["items"][0]["id"]
        assert (await c.delete(f"/api/v1/auth/sessions/{their_id}",
                               headers=auth(second["access_token"]))).status_code == 404
        assert not world.sessions[their_id].ended
        assert (await c.get("/api/v1/auth/sessions")).status_code == 401
        # sign out everywhere
        third = (await c.post("/api/v1/auth/login", json=login)).json()
        ended = await c.post("/api/v1/auth/sign-out-everywhere", headers=auth(third["access_token"]))
        assert ended.status_code == 200 and ended.json() == {"sessions_ended": 2}
        for tokens in (second, third):
            r = await c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 401


async def test_admin_signs_a_user_out_everywhere_and_unlocks(gateway, world):
    admin, admin_token = world.user("org_admin")
    member, _ = user_with_password(world, email=None)
    member.organization_id = admin.organization_id
    world.users[member.id].organization_id = admin.organization_id
    outsider, _ = user_with_password(world)
    _, lab_token = world.user("lab_user", org=admin.organization_id)
    async with gateway() as c:
        await c.post("/api/v1/auth/login", json={"email": member.email, "password": PASSWORD})
        await c.post("/api/v1/auth/login", json={"email": outsider.email, "password": PASSWORD})
        r = await c.post(f"/api/v1/admin/users/{member.id}/sign-out-everywhere", headers=auth(admin_token))
        assert r.status_code == 200 and r.json() == {"sessions_ended": 1}
        # another organization's user: 404 as if it did not exist, and its session lives on
        other_org = await c.post(f"/api/v1/admin/users/{outsider.id}/sign-out-everywhere", headers=auth(admin_token))
        assert other_org.status_code == 404 and other_org.json()["error"]["code"] == "not_found"
        assert [s.ended for s in world.sessions.values() if s.user_id == outsider.id] == [False]
        assert (await c.post(f"/api/v1/admin/users/{member.id}/sign-out-everywhere",
                             headers=auth(lab_token))).status_code == 403

        # lockout: 429 with the service's Retry-After and its message
        world.locked[member.email] = 840
        locked = await c.post("/api/v1/auth/login", json={"email": member.email, "password": PASSWORD})
        assert locked.status_code == 429, locked.text
        assert locked.headers["retry-after"] == "840"
        assert locked.json()["error"]["code"] == "resource_exhausted"
        assert locked.json()["error"]["message"] == "too many failed sign-ins; try again in 840 s"
        users = (await c.get("/api/v1/admin/users", headers=auth(admin_token))).json()["items"]
        badge = {x["email"]: x["locked_until"] for x in users}
        assert badge[member.email] and badge[member.email].endswith("Z") and badge[admin.email] is None
        assert (await c.post(f"/api/v1/admin/users/{member.id}/unlock", headers=auth(lab_token))).status_code == 403
        world.locked[outsider.email] = 60
        assert (await c.post(f"/api/v1/admin/users/{outsider.id}/unlock",
                             headers=auth(admin_token))).status_code == 404
        assert outsider.email in world.locked  # unchanged
        unlocked = await c.post(f"/api/v1/admin/users/{member.id}/unlock", headers=auth(admin_token))
        assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
        assert unlocked.json()["email"] == member.email
        assert (await c.post("/api/v1/auth/login",
                             json={"email": member.email, "password": PASSWORD})).status_code == 200


async def test_new_routes_are_documented(gateway):
    async with gateway() as c:
        spec = (await c.get("/openapi.json")).json()
    paths = spec["paths"]
    assert paths["/api/v1/auth/sessions"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/SessionList"}
    assert "204" in paths["/api/v1/auth/sessions/{session_id}"]["delete"]["responses"]
    for path in ("/api/v1/auth/sign-out-everywhere", "/api/v1/admin/users/{user_id}/sign-out-everywhere"):
        assert paths[path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/SessionsEnded")
    assert paths["/api/v1/admin/users/{user_id}/unlock"]["post"]["tags"] == ["admin"]
    login = paths["/api/v1/auth/login"]["post"]
    assert any(p["name"] == "X-HV-Session" for p in login["parameters"])
    assert login["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenPair")
    schemas = spec["components"]["schemas"]
    assert "locked_until" in schemas["User"]["properties"]
