"""Every route of the running gateway's OpenAPI x every role (anonymous, lab_user, org_admin,
ml_engineer, platform_admin) x own vs another organization's object, on the real system.

Two organizations are set up through REST: "own" (org_admin, an invited lab_user, an invited user
made ml_engineer by the platform_admin) and "other" (org_admin, a lab_user), each with a
prediction, a batch, 20 reviewed cells and an adaptation (started, then cancelled), API keys and
sign-in sessions. The rules below are the role tables of docs/api.md, in the role groups of
hemovision_contracts; what is checked for each call:

- anonymous on a non-public route: 401;
- a role the rule does not allow: 403;
- another organization's object (an allowed role): 404 or 403, never 2xx — except where the
  rule says platform_admin manages users across organizations (documented);
- an allowed role on its own object: no 401/403/404, no 5xx (a 2xx or the route's documented 409/422).

A route in the OpenAPI without a rule fails the test, so a new route is covered once it has one.
Calls that consume their object (deletes, sign-outs) get a fresh object or session each time.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hemovision_contracts import ADAPTATION_ROLES, PLATFORM_ROLES, ROLES, USER_ADMIN_ROLES
from hemovision_testkit.hostile import _cell, encode

ROOT = Path(__file__).resolve().parents[2]
ANON, LAB, ORG, ML, PLAT = "anonymous", "lab_user", "org_admin", "ml_engineer", "platform_admin"
CALLERS = (ANON, *ROLES)
PUBLIC = "public"
SIGNED_IN = ROLES
PASSWORD = "correct horse battery staple"
MISSING_ID = "00000000-0000-4000-8000-000000000000"


def _smtp_sink_class():
    spec = importlib.util.spec_from_file_location("hv_smtp_sink", ROOT / "services/gateway/tests/browser/smtp_sink.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SmtpSink


@dataclass(frozen=True)
class Rule:
    who: str | tuple[str, ...]  # PUBLIC or the roles allowed
    kind: str | None = None  # the object the path names: own vs another organization's
    body: Callable[[World, Caller], dict[str, Any]] | None = None  # request kwargs (json=..., files=...)
    fresh: bool = False  # the call consumes its object: a new one for every call
    platform_crosses: bool = False  # platform_admin may act on another organization's object (documented)
    ends_session: bool = False  # revokes the caller's session(s): made on a fresh sign-in
    org_data: bool = False  # an organization's data: a caller without organization (platform_admin) gets 403
    also_ok: frozenset[int] = frozenset()  # documented non-2xx answers for an allowed caller (409 ...)
    after: Callable[[World, Caller, httpx.Response], None] | None = None


@dataclass
class Caller:
    role: str
    email: str = ""
    password: str = PASSWORD
    token: str = ""
    user_id: str = ""
    org: str = "own"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class World:
    http: httpx.Client
    sink: Any
    callers: dict[str, Caller] = field(default_factory=dict)
    admins: dict[str, Caller] = field(default_factory=dict)  # org -> its org_admin
    objects: dict[tuple[str, str], str] = field(default_factory=dict)  # (org, kind) -> id
    statuses: list[tuple[str, str, str, int]] = field(default_factory=list)

    # -- plain REST with the rate limiter in mind --------------------------------------------
    def call(self, method: str, url: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        for _ in range(8):
            self.http.cookies.clear()  # a token or nothing: never a session cookie from an earlier answer
            if "events" in url:
                with self.http.stream(method, url, headers=headers, timeout=30, **kw) as reply:
                    reply.read()
            else:
                reply = self.http.request(method, url, headers=headers, **kw)
            if reply.status_code != 429:
                return reply
            time.sleep(min(int(reply.headers.get("Retry-After", "5")), 30))
        return reply

    def ok(self, reply: httpx.Response, *statuses: int) -> dict:
        assert reply.status_code in statuses, f"{reply.request.method} {reply.request.url}: {reply.status_code} {reply.text}"
        return reply.json() if reply.content and reply.headers.get("content-type", "").startswith("application/json") else {}

    def login(self, caller: Caller) -> None:
        body = self.ok(self.call("POST", "/api/v1/auth/login", json={"email": caller.email, "password": caller.password}), 200)
        caller.token = body["access_token"]
        caller.user_id = self.ok(self.call("GET", "/api/v1/me", headers=caller.headers), 200)["id"]

    # -- users -----------------------------------------------------------------------------
    def register(self, org: str) -> Caller:
        caller = Caller(ORG, email=f"matrix-{uuid.uuid4().hex[:10]}@example.org", org=org)
        self.ok(self.call("POST", "/api/v1/auth/register", json={"email": caller.email, "password": PASSWORD,
                                                                 "organization": f"Matrix {org} {uuid.uuid4().hex[:6]}"}), 201)
        self.login(caller)
        return caller

    def invite(self, org: str, role: str = LAB) -> Caller:
        caller = Caller(role, email=f"matrix-{uuid.uuid4().hex[:10]}@example.org", org=org)
        seen = len(self.sink.messages)
        self.ok(self.call("POST", "/api/v1/invitations", headers=self.admins[org].headers,
                          json={"email": caller.email, "role": role}), 201)
        end = time.monotonic() + 30
        while True:
            links = [link for msg in self.sink.messages[seen:] if caller.email in str(msg["To"])
                     for link in re.findall(r"https?://\S+", msg.get_body(("plain",)).get_content())]
            if links:
                break
            assert time.monotonic() < end, f"no invitation mail for {caller.email}"
            time.sleep(0.2)
        token = re.search(r"token=([^&\s]+)", links[-1]).group(1)
        self.ok(self.call("POST", "/api/v1/invitations/accept", json={"token": token, "password": PASSWORD}), 201)
        self.login(caller)
        return caller

    # -- objects ---------------------------------------------------------------------------
    def upload(self, caller: Caller, seed: int = 0) -> str:
        png = encode(_cell(64, 64, seed), "PNG")
        return self.ok(self.call("POST", "/api/v1/predictions", headers=caller.headers,
                                 files={"file": ("cell.png", png, "image/png")}), 201)["id"]

    def batch(self, caller: Caller, n: int = 1) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for i in range(n):
                zf.writestr(f"cell-{i}.png", encode(_cell(64, 64, i), "PNG"))
        batch_id = self.ok(self.call("POST", "/api/v1/batches", headers=caller.headers,
                                     files={"files": ("cells.zip", buf.getvalue(), "application/zip")}), 202)["id"]
        end = time.monotonic() + 300
        while True:
            body = self.ok(self.call("GET", f"/api/v1/batches/{batch_id}", headers=caller.headers), 200)
            if body["status"] in ("completed", "failed"):
                return batch_id
            assert time.monotonic() < end, f"batch {batch_id} not done"
            time.sleep(1)

    def adaptation(self, caller: Caller) -> str:
        """20 reviewed cells (one batch), an adaptation started and cancelled at once."""
        batch_id = self.batch(caller, 20)
        items = self.ok(self.call("GET", f"/api/v1/batches/{batch_id}", headers=caller.headers), 200)["items"]
        for item in items:
            assert item["prediction_id"], item
            self.ok(self.call("POST", f"/api/v1/predictions/{item['prediction_id']}/review", headers=caller.headers,
                              json={"label": "neutrophil"}), 200)
        adaptation_id = self.ok(self.call("POST", "/api/v1/adaptations", headers=caller.headers, json={}), 202)["id"]
        self.ok(self.call("POST", f"/api/v1/adaptations/{adaptation_id}/cancel", headers=caller.headers), 200, 409)
        return adaptation_id

    def api_key(self, caller: Caller) -> str:
        return self.ok(self.call("POST", "/api/v1/api-keys", headers=caller.headers, json={"name": "matrix"}), 201)["id"]

    def session(self, caller: Caller) -> str:
        """A new sign-in of `caller` (its own tokens untouched): that session's id."""
        before = {s["id"] for s in self.ok(self.call("GET", "/api/v1/auth/sessions", headers=caller.headers), 200)["items"]}
        self.ok(self.call("POST", "/api/v1/auth/login", json={"email": caller.email, "password": caller.password}), 200)
        after = self.ok(self.call("GET", "/api/v1/auth/sessions", headers=caller.headers), 200)["items"]
        return next(s["id"] for s in after if s["id"] not in before)

    def object_id(self, kind: str, org: str, caller: Caller, fresh: bool) -> str:
        """The id to put in the path: `org`'s object of this kind (fresh ones made by its admin,
        or by the caller where the object is the caller's own: API keys and sessions)."""
        if kind == "model_version":
            return "1"
        if kind in ("missing_model_version",):
            return "999"
        if kind == "missing_training_job":
            return MISSING_ID
        if kind in ("api_key", "session"):  # the caller's own, or the other organization's admin's
            owner = caller if org == "own" else self.admins[org]
            if not owner.token:
                return MISSING_ID
            if fresh or org == "own":
                return self.api_key(owner) if kind == "api_key" else self.session(owner)
        if fresh:
            if kind == "prediction":  # deleting: the uploader (or an org_admin) may
                return self.upload(caller if org == "own" and caller.org == "own" else self.admins[org])
            if kind == "user":
                return self.invite(org).user_id
        return self.objects[(org, kind)]


def _files_one_image(world: World, caller: Caller) -> dict:
    return {"files": {"file": ("cell.png", encode(_cell(64, 64, 3), "PNG"), "image/png")}}


def _files_zip(world: World, caller: Caller) -> dict:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cell.png", encode(_cell(64, 64, 4), "PNG"))
    return {"files": {"files": ("cells.zip", buf.getvalue(), "application/zip")}}


def _json(body: dict | Callable[[], dict]) -> Callable[[World, Caller], dict]:
    return lambda world, caller: {"json": body() if callable(body) else body}


def _new_email() -> str:
    return f"matrix-{uuid.uuid4().hex[:10]}@example.org"


def _cancel_started(world: World, caller: Caller, reply: httpx.Response) -> None:
    """An allowed POST /adaptations really starts a fine-tune: stop it at once (2 shared cores)."""
    if reply.status_code == 202:
        world.call("POST", f"/api/v1/adaptations/{reply.json()['id']}/cancel", headers=caller.headers)


def _password_changed(world: World, caller: Caller, reply: httpx.Response) -> None:
    if reply.status_code == 204:
        caller.password = PASSWORD + " 2" if caller.password == PASSWORD else PASSWORD


def _new_password(world: World, caller: Caller) -> dict:
    new = PASSWORD + " 2" if caller.password == PASSWORD else PASSWORD
    return {"json": {"current_password": caller.password, "new_password": new}}


ADMIN_USER = dict(kind="user", platform_crosses=True)
CONFLICT = frozenset({409})

RULES: dict[str, Rule] = {
    # accounts (public ones answer anyone; a bogus token is a 4xx, never a 5xx)
    "POST /api/v1/auth/register": Rule(PUBLIC, body=_json(lambda: {"email": _new_email(), "password": PASSWORD,
                                                                    "organization": f"Matrix {uuid.uuid4().hex[:6]}"})),
    "POST /api/v1/auth/login": Rule(PUBLIC, body=_json({"email": "nobody-matrix@example.org", "password": "x" * 12})),
    "POST /api/v1/auth/refresh": Rule(PUBLIC, body=_json({"refresh_token": "not-a-token"})),
    "POST /api/v1/auth/logout": Rule(SIGNED_IN, body=_json({}), ends_session=True),
    "GET /api/v1/auth/sessions": Rule(SIGNED_IN),
    "DELETE /api/v1/auth/sessions/{session_id}": Rule(SIGNED_IN, kind="session", fresh=True),
    "POST /api/v1/auth/sign-out-everywhere": Rule(SIGNED_IN, ends_session=True),
    "GET /api/v1/me": Rule(SIGNED_IN),
    "POST /api/v1/me/password": Rule(SIGNED_IN, body=_new_password, ends_session=True, after=_password_changed),
    "POST /api/v1/auth/verify-email/request": Rule(SIGNED_IN),
    "POST /api/v1/auth/verify-email": Rule(PUBLIC, body=_json({"token": "not-a-token"})),
    "POST /api/v1/auth/password-reset/request": Rule(PUBLIC, body=_json({"email": "nobody-matrix@example.org"})),
    "POST /api/v1/auth/password-reset": Rule(PUBLIC, body=_json({"token": "not-a-token", "new_password": PASSWORD})),
    "POST /api/v1/invitations": Rule(USER_ADMIN_ROLES, body=_json(lambda: {"email": _new_email(), "role": "lab_user"}),
                                     also_ok=CONFLICT),  # platform_admin has no organization to invite into
    "POST /api/v1/invitations/accept": Rule(PUBLIC, body=_json({"token": "not-a-token", "password": PASSWORD})),
    "GET /api/v1/api-keys": Rule(SIGNED_IN),
    "POST /api/v1/api-keys": Rule(SIGNED_IN, body=_json({"name": "matrix"})),
    "DELETE /api/v1/api-keys/{key_id}": Rule(SIGNED_IN, kind="api_key", fresh=True),
    # predictions
    "POST /api/v1/predictions": Rule(SIGNED_IN, org_data=True, body=_files_one_image),
    "GET /api/v1/predictions": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/review-queue": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/predictions/export.csv": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/stats": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/datasets/reviewed.zip": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/predictions/{prediction_id}": Rule(SIGNED_IN, kind="prediction"),
    "DELETE /api/v1/predictions/{prediction_id}": Rule(SIGNED_IN, kind="prediction", fresh=True),
    "POST /api/v1/predictions/{prediction_id}/review": Rule(SIGNED_IN, kind="prediction",
                                                            body=_json({"label": "neutrophil"})),
    "GET /api/v1/predictions/{prediction_id}/image.png": Rule(SIGNED_IN, kind="prediction"),
    "GET /api/v1/predictions/{prediction_id}/heatmap.png": Rule(SIGNED_IN, kind="prediction"),
    "GET /api/v1/predictions/{prediction_id}/report.pdf": Rule(SIGNED_IN, kind="prediction"),
    # batches
    "POST /api/v1/batches": Rule(SIGNED_IN, org_data=True, body=_files_zip),
    "GET /api/v1/batches": Rule(SIGNED_IN, org_data=True),
    "GET /api/v1/batches/{batch_id}": Rule(SIGNED_IN, kind="batch"),
    "GET /api/v1/batches/{batch_id}/events": Rule(SIGNED_IN, kind="batch"),
    "GET /api/v1/batches/{batch_id}/report.pdf": Rule(SIGNED_IN, kind="batch"),
    # models and training (platform scope: no organization owns them; a missing id answers 404)
    "GET /api/v1/models": Rule(SIGNED_IN),
    "GET /api/v1/models/{version}": Rule(SIGNED_IN, kind="model_version"),
    "POST /api/v1/models/{version}/activate": Rule(PLATFORM_ROLES, kind="missing_model_version", body=_json({}),
                                                   also_ok=frozenset({404})),
    "POST /api/v1/models/{version}/deprecate": Rule(PLATFORM_ROLES, kind="missing_model_version",
                                                    body=_json({"reason": "matrix"}), also_ok=frozenset({404})),
    "POST /api/v1/models/{version}/restore": Rule(PLATFORM_ROLES, kind="missing_model_version", body=_json({}),
                                                  also_ok=frozenset({404})),
    "POST /api/v1/training-jobs": Rule(PLATFORM_ROLES, body=_json({"epochs": -1}), also_ok=frozenset({422})),
    "GET /api/v1/training-jobs": Rule(PLATFORM_ROLES),
    "GET /api/v1/training-jobs/{job_id}": Rule(PLATFORM_ROLES, kind="missing_training_job", also_ok=frozenset({404})),
    "POST /api/v1/training-jobs/{job_id}/cancel": Rule(PLATFORM_ROLES, kind="missing_training_job",
                                                       also_ok=frozenset({404})),
    "GET /api/v1/training-jobs/{job_id}/events": Rule(PLATFORM_ROLES, kind="missing_training_job",
                                                      also_ok=frozenset({404})),
    # rollouts (platform scope; nothing is running here, so an allowed caller gets the documented 404/409)
    "POST /api/v1/rollouts": Rule(PLATFORM_ROLES, body=_json({"version": 999, "mode": "shadow"}),
                                  also_ok=frozenset({404, 409, 422})),
    "GET /api/v1/rollouts/current": Rule(SIGNED_IN, also_ok=frozenset({404})),
    "POST /api/v1/rollouts/current/promote": Rule(PLATFORM_ROLES, body=_json({}), also_ok=frozenset({404, 409})),
    "POST /api/v1/rollouts/current/abort": Rule(PLATFORM_ROLES, body=_json({}), also_ok=frozenset({404, 409})),
    # adapt to our lab
    "POST /api/v1/adaptations": Rule(ADAPTATION_ROLES, body=_json({}), also_ok=CONFLICT, after=_cancel_started),
    "GET /api/v1/adaptations": Rule(SIGNED_IN),
    "GET /api/v1/adaptations/{adaptation_id}": Rule(SIGNED_IN, kind="adaptation"),
    "POST /api/v1/adaptations/{adaptation_id}/cancel": Rule(ADAPTATION_ROLES, kind="adaptation", also_ok=CONFLICT),
    "GET /api/v1/organization/model": Rule(SIGNED_IN),
    "GET /api/v1/drift": Rule(SIGNED_IN),  # members: their organization; platform staff: every one's scores
    "POST /api/v1/organization/model/rollback": Rule(ADAPTATION_ROLES, body=_json({}), also_ok=CONFLICT),
    # administration: org_admin its organization, platform_admin every organization
    "GET /api/v1/admin/users": Rule(USER_ADMIN_ROLES),
    "GET /api/v1/admin/users/{user_id}": Rule(USER_ADMIN_ROLES, **ADMIN_USER),
    "DELETE /api/v1/admin/users/{user_id}": Rule(USER_ADMIN_ROLES, fresh=True, **ADMIN_USER),
    "POST /api/v1/admin/users/{user_id}/role": Rule(USER_ADMIN_ROLES, body=_json({"role": "lab_user"}), **ADMIN_USER),
    "POST /api/v1/admin/users/{user_id}/active": Rule(USER_ADMIN_ROLES, body=_json({"active": True}), **ADMIN_USER),
    "POST /api/v1/admin/users/{user_id}/sign-out-everywhere": Rule(USER_ADMIN_ROLES, **ADMIN_USER),
    "POST /api/v1/admin/users/{user_id}/unlock": Rule(USER_ADMIN_ROLES, **ADMIN_USER),
    "GET /api/v1/admin/organizations": Rule(USER_ADMIN_ROLES),
    "GET /api/v1/admin/retention": Rule(USER_ADMIN_ROLES, org_data=True),
    "PUT /api/v1/admin/retention": Rule(USER_ADMIN_ROLES, org_data=True,
                                        body=_json({"blob_days": None, "record_days": None})),  # the defaults
    "GET /api/v1/admin/audit": Rule(USER_ADMIN_ROLES),
    "GET /api/v1/admin/audit/export": Rule(USER_ADMIN_ROLES),
    # probes
    "GET /healthz": Rule(PUBLIC),
    "GET /readyz": Rule(PUBLIC),
}
GLOBAL_KINDS = {"model_version", "missing_model_version", "missing_training_job"}


def _routes(client: httpx.Client) -> list[str]:
    spec = client.get("/openapi.json").json()
    return [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops
            if method in ("get", "post", "put", "patch", "delete")]


def test_every_route_has_a_rule(client):
    routes = _routes(client)
    missing = [r for r in routes if r not in RULES]
    assert not missing, f"routes without an authorization rule (add them to RULES): {missing}"
    stale = [r for r in RULES if r not in routes]
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.fixture(scope="module")
def world(system, client) -> World:
    SmtpSink = _smtp_sink_class()
    with SmtpSink(port=system.smtp_port) as sink, httpx.Client(base_url=system.base_url, timeout=60) as http:
        w = World(http=http, sink=sink)
        email = f"matrix-root-{uuid.uuid4().hex[:6]}@example.org"
        created = subprocess.run(
            [sys.executable, "-m", "hemovision_auth", "create-admin", "--email", email, "--password-stdin"],
            input=PASSWORD, text=True, capture_output=True, cwd=ROOT, timeout=120,
            env={**os.environ, "HV_DATABASE_URL": system.database_url, "HV_ENV": "development"})
        assert created.returncode == 0, created.stderr
        platform = Caller(PLAT, email=email, org="none")
        w.login(platform)
        for org in ("own", "other"):
            w.admins[org] = w.register(org)
        w.callers = {ANON: Caller(ANON), ORG: w.admins["own"], LAB: w.invite("own", LAB), PLAT: platform}
        ml = w.invite("own", LAB)
        w.ok(w.call("POST", f"/api/v1/admin/users/{ml.user_id}/role", headers=platform.headers,
                    json={"role": ML}), 200)
        ml.role = ML
        w.login(ml)
        w.callers[ML] = ml
        for org in ("own", "other"):
            admin = w.admins[org]
            w.objects[(org, "prediction")] = w.upload(admin)
            w.objects[(org, "adaptation")] = w.adaptation(admin)
            w.objects[(org, "batch")] = w.batch(admin)
            w.objects[(org, "user")] = w.invite(org, LAB).user_id
            w.objects[(org, "api_key")] = w.api_key(admin)
            w.objects[(org, "session")] = w.session(admin)
        yield w


def _expected(rule: Rule, role: str, scope: str) -> str:
    if rule.who == PUBLIC:
        return "public"
    if role == ANON:
        return "401"
    if role not in rule.who or (rule.org_data and role == PLAT):
        return "403"
    if scope == "other" and not (rule.platform_crosses and role == PLAT):
        return "denied"
    return "allowed"


def test_authorization_matrix(client, world):
    routes = [r for r in _routes(client) if r in RULES]
    wrong: list[str] = []
    checked = 0
    for route in routes:
        rule = RULES[route]
        method, path = route.split(" ", 1)
        scopes = ["own", "other"] if rule.kind and rule.kind not in GLOBAL_KINDS else ["own"]
        for role in CALLERS:
            caller = world.callers[role]
            for scope in scopes:
                if scope == "own" and rule.kind and rule.kind not in GLOBAL_KINDS and role == PLAT \
                        and rule.kind not in ("api_key", "session", "user"):
                    continue  # platform_admin belongs to no organization: it has no own prediction, batch, ...
                expect = _expected(rule, role, scope)
                url = path
                if rule.kind:  # a fresh object only where the call should succeed; refusals touch nothing
                    object_id = world.object_id(rule.kind, scope, caller, rule.fresh and expect == "allowed")
                    url = re.sub(r"\{[^}]+\}", object_id, path)
                kwargs = rule.body(world, caller) if rule.body else {}
                headers = caller.headers
                if rule.ends_session and caller.token:
                    session_caller = Caller(role, caller.email, caller.password, org=caller.org)
                    world.login(session_caller)
                    headers = session_caller.headers
                reply = world.call(method, url, headers=headers, **kwargs)
                if rule.after:
                    rule.after(world, caller, reply)
                if rule.ends_session and caller.token:
                    world.login(caller)  # a sign-out everywhere ended the caller's main session too
                checked += 1
                status = reply.status_code
                world.statuses.append((route, role, scope, status))
                ok = status < 500 and {
                    "public": status != 403,
                    "401": status == 401,
                    "403": status == 403,
                    "denied": status in (403, 404),
                    "allowed": 200 <= status < 300 or status in rule.also_ok,
                }[expect]
                if not ok:
                    wrong.append(f"{route} as {role} on {scope} object: expected {expect}, got {status} {reply.text[:200]}")
    print(f"authorization matrix: {len(routes)} routes, {checked} calls")
    assert checked > 300
    assert not wrong, f"{len(wrong)} of {checked} calls broke the rules:\n" + "\n".join(wrong)


def test_deleting_a_colleagues_prediction_needs_org_admin(world):
    """Inside one organization a prediction is deleted by its uploader or an org_admin only."""
    admin, lab, ml = world.callers[ORG], world.callers[LAB], world.callers[ML]
    by_admin = world.upload(admin, seed=11)
    for caller in (lab, ml):
        reply = world.call("DELETE", f"/api/v1/predictions/{by_admin}", headers=caller.headers)
        assert reply.status_code == 403, (caller.role, reply.text)
    assert world.call("GET", f"/api/v1/predictions/{by_admin}", headers=admin.headers).status_code == 200
    by_lab = world.upload(lab, seed=12)
    assert world.call("DELETE", f"/api/v1/predictions/{by_lab}", headers=admin.headers).status_code == 204
    assert world.call("GET", f"/api/v1/predictions/{by_lab}", headers=lab.headers).status_code == 404
