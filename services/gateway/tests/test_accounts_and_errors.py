"""Accounts, API keys, roles, rate limiting, readiness and the gRPC -> HTTP error table."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

from gateway_fakes import auth, png_bytes

from hemovision_gateway.errors import GRPC_TO_HTTP, api_error_from_grpc


async def test_register_login_me_refresh_logout(client, world):
    r = await client.post("/api/v1/auth/register",
                          json={"email": "ana@lab.example", "password": "long enough pw", "organization": "Lab A"})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "org_admin" and r.json()["organization"] == "Lab A"
    dup = await client.post("/api/v1/auth/register",
                            json={"email": "ana@lab.example", "password": "long enough pw", "organization": "B"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
    short = await client.post("/api/v1/auth/register", json={"email": "b@x.io", "password": "short", "organization": "C"})
    assert short.status_code == 422
    missing = await client.post("/api/v1/auth/register", json={"email": "b@x.io"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "validation_error"
    bad = await client.post("/api/v1/auth/login", json={"email": "ana@lab.example", "password": "nope"})
    assert bad.status_code == 401
    tokens = (await client.post("/api/v1/auth/login", json={"email": "ana@lab.example", "password": "long enough pw"})).json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = await client.get("/api/v1/me", headers=auth(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == "ana@lab.example"
    ref = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert ref.status_code == 200 and ref.json()["access_token"]
    out = await client.post("/api/v1/auth/logout", headers=auth(tokens["access_token"]),
                            json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204 and "logout" in world.calls


async def test_revoked_token_is_rejected(client, world, app):
    from hemovision_tokens import revoke_user_tokens

    u, token = world.user("lab_user")
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 200
    await revoke_user_tokens(app.state.ctx.redis, u.id, at=9_999_999_999)
    r = await client.get("/api/v1/me", headers=auth(token))
    assert r.status_code == 401 and r.json()["error"]["message"] == "token revoked"


async def test_email_and_invitation_flows(client, world):
    _, admin = world.user("org_admin")
    _, lab = world.user("lab_user")
    assert (await client.post("/api/v1/auth/verify-email/request", headers=auth(admin))).status_code == 202
    assert (await client.post("/api/v1/auth/verify-email", json={"token": "verify-ok"})).status_code == 200
    assert (await client.post("/api/v1/auth/verify-email", json={"token": "nope"})).status_code == 404
    assert (await client.post("/api/v1/auth/password-reset/request", json={"email": "x@y.z"})).status_code == 202
    assert (await client.post("/api/v1/auth/password-reset", json={"token": "reset-ok", "new_password": "x" * 12})).status_code == 204
    inv = await client.post("/api/v1/invitations", headers=auth(admin), json={"email": "c@lab.example"})
    assert inv.status_code == 201 and inv.json()["role"] == "lab_user"
    assert (await client.post("/api/v1/invitations", headers=auth(lab), json={"email": "d@lab.example"})).status_code == 403
    acc = await client.post("/api/v1/invitations/accept", json={"token": "invite-ok", "password": "p" * 12})
    assert acc.status_code == 201 and acc.json()["role"] == "lab_user"
    assert (await client.post("/api/v1/me/password", headers=auth(lab),
                              json={"current_password": "a" * 10, "new_password": "b" * 12})).status_code == 204


async def test_api_keys(client, world):
    _, token = world.user("lab_user")
    created = await client.post("/api/v1/api-keys", headers=auth(token), json={"name": "LIS"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("hv_")
    listed = (await client.get("/api/v1/api-keys", headers=auth(token))).json()["items"]
    assert [k["name"] for k in listed] == ["LIS"] and "secret" not in listed[0]
    for _ in range(2):
        r = await client.post("/api/v1/predictions", headers=auth(secret), files={"file": ("a.png", png_bytes())})
        assert r.status_code == 201
    assert world.calls.count("exchange") == 1  # cached in Redis
    assert (await client.get("/api/v1/me", headers=auth("hv_wrong"))).status_code == 401
    assert (await client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=auth(token))).status_code == 204


async def test_inputs_schemathesis_found_loose_are_refused_by_the_schema(client, world):
    """Each was accepted by the schema and then refused (or silently misread) further in."""
    _, token = world.user("org_admin")
    blank = await client.post("/api/v1/api-keys", headers=auth(token), json={"name": "   "})
    assert blank.status_code == 422
    not_a_session = await client.delete("/api/v1/auth/sessions/not-a-uuid", headers=auth(token))
    assert not_a_session.status_code == 422
    odd_mode = await client.post("/api/v1/auth/login", headers={"X-HV-Session": "bearer"},
                                 json={"email": "a@b.example", "password": "whatever-long"})
    assert odd_mode.status_code == 422 and "X-HV-Session" in odd_mode.json()["error"]["message"]
    unix_time = await client.get("/api/v1/admin/audit?to=0", headers=auth(token))
    assert unix_time.status_code == 422
    assert (await client.get("/api/v1/admin/audit?to=2026-12-07", headers=auth(token))).status_code == 200


async def test_lab_user_cannot_reach_admin_endpoints(client, world):
    _, lab = world.user("lab_user")
    forbidden = [
        ("GET", "/api/v1/admin/users", None), ("GET", "/api/v1/admin/organizations", None),
        ("GET", "/api/v1/admin/audit", None),
        ("POST", "/api/v1/admin/users/x/role", {"role": "org_admin"}),
        ("POST", "/api/v1/admin/users/x/active", {"active": False}), ("DELETE", "/api/v1/admin/users/x", None),
        ("GET", "/api/v1/admin/users/x", None),
        ("POST", "/api/v1/models/2/activate", {}), ("POST", "/api/v1/training-jobs", {}),
        ("GET", "/api/v1/training-jobs", None), ("GET", "/api/v1/training-jobs/x", None),
        ("POST", "/api/v1/training-jobs/x/cancel", None), ("GET", "/api/v1/training-jobs/x/events", None),
        ("POST", "/api/v1/invitations", {"email": "a@b.c"}),
    ]
    for method, path, body in forbidden:
        r = await client.request(method, path, headers=auth(lab), json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "permission_denied"


async def test_admin_users_and_models(client, world):
    admin_user, admin = world.user("org_admin")
    colleague, _ = world.user("lab_user", org=admin_user.organization_id)
    users = (await client.get("/api/v1/admin/users", headers=auth(admin))).json()["items"]
    assert {u["id"] for u in users} == {admin_user.id, colleague.id}
    r = await client.post(f"/api/v1/admin/users/{colleague.id}/role", headers=auth(admin), json={"role": "org_admin"})
    assert r.status_code == 200 and r.json()["role"] == "org_admin"
    r = await client.post(f"/api/v1/admin/users/{colleague.id}/active", headers=auth(admin), json={"active": False})
    assert r.json()["active"] is False
    assert (await client.get(f"/api/v1/admin/users/{colleague.id}", headers=auth(admin))).status_code == 200
    assert (await client.delete(f"/api/v1/admin/users/{colleague.id}", headers=auth(admin))).status_code == 204
    assert (await client.get("/api/v1/admin/organizations", headers=auth(admin))).status_code == 200
    assert (await client.get("/api/v1/admin/audit", headers=auth(admin))).status_code == 200
    models = (await client.get("/api/v1/models", headers=auth(admin))).json()["items"]
    assert [m["version"] for m in models] == [1, 2] and models[0]["status"] == "active"
    assert (await client.get("/api/v1/models/2", headers=auth(admin))).json()["metrics"]["accuracy"] == 0.86
    assert (await client.get("/api/v1/models/9", headers=auth(admin))).status_code == 404
    _, ml = world.user("ml_engineer")
    act = await client.post("/api/v1/models/2/activate", headers=auth(ml), json={"reason": "better"})
    assert act.status_code == 200 and act.json()["status"] == "active"
    job = await client.post("/api/v1/training-jobs", headers=auth(ml), json={"epochs": 2})
    assert job.status_code == 201 and job.json()["status"] == "queued"
    jid = job.json()["id"]
    assert (await client.get("/api/v1/training-jobs", headers=auth(ml))).json()["items"][0]["id"] == jid
    assert (await client.get(f"/api/v1/training-jobs/{jid}", headers=auth(ml))).status_code == 200
    events = await client.get(f"/api/v1/training-jobs/{jid}/events", headers=auth(ml))
    assert events.status_code == 200 and "event: done" in events.text and '"succeeded"' in events.text
    cancel = await client.post(f"/api/v1/training-jobs/{jid}/cancel", headers=auth(ml))
    assert cancel.json()["status"] == "cancelled"



async def test_a_number_past_its_protobuf_field_is_422_not_500(client, world):
    """schemathesis: GET /models/103338019633858478714514309120 was a 500 (protobuf's ValueError
    while the int64 request was built). Every int headed for a protobuf field is bounded."""
    _, admin = world.user("org_admin")
    _, ml = world.user("ml_engineer")
    huge = 10**29
    for method, path, token, body in [
        ("GET", f"/api/v1/models/{huge}", admin, None), ("GET", "/api/v1/models/0", admin, None),
        ("POST", f"/api/v1/models/{huge}/activate", ml, {}), ("POST", f"/api/v1/models/{huge}/deprecate", ml,
                                                               {"reason": "x"}),
        ("POST", f"/api/v1/models/{huge}/restore", ml, {}),
        ("GET", f"/api/v1/predictions?model_version={huge}", admin, None),
        ("GET", f"/api/v1/stats?model_version={huge}", admin, None),
        ("POST", "/api/v1/training-jobs", ml, {"data_dir": "/d", "seed": 2**31}),
        ("POST", "/api/v1/training-jobs", ml, {"data_dir": "/d", "limit_per_class": 2**31}),
        ("POST", "/api/v1/training-jobs", ml, {"data_dir": "/d", "parent_version": huge}),
    ]:
        r = await client.request(method, path, headers=auth(token), json=body)
        assert r.status_code == 422, (method, path, body, r.status_code, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    assert (await client.get(f"/api/v1/models/{2**53}", headers=auth(admin))).status_code == 404


async def test_a_nul_character_is_refused_before_any_service_sees_it(client, world):
    """schemathesis: a NUL (U+0000) reached PostgreSQL through auth (an API key's name), training
    (`?name=`, `model_name`) and history (`?sample_id=`), and the caller saw 502. Every /api route
    refuses it in the path, the query and a JSON body with a 422; a literal backslash-u0000 is text."""
    _, admin = world.user("org_admin")
    for method, path, kwargs in [
        ("GET", "/api/v1/models", {"params": {"name": "a\x00b"}}),
        ("GET", "/api/v1/models/1", {"params": {"name": "a\x00b"}}),
        ("GET", "/api/v1/stats", {"params": {"sample_id": "\x00"}}),
        ("GET", "/api/v1/predictions", {"params": {"x\x00": "1"}}),
        ("GET", "/api/v1/predictions/a%00b", {}),
        ("POST", "/api/v1/api-keys", {"json": {"name": "LIS\x00"}}),
        ("POST", "/api/v1/adaptations", {"json": {"model_name": "a\x00"}}),
        ("POST", "/api/v1/api-keys", {"content": b'{"name": "a\\\\\\u0000"}',
                                      "headers": {"Content-Type": "application/json; charset=utf-8"}}),
        # bodies FastAPI parses as JSON without `application/json`: no content type, `+json`
        ("POST", "/api/v1/api-keys", {"content": b'{"name": "a\\u0000"}'}),
        ("POST", "/api/v1/api-keys", {"content": b'{"name": "a\\u0000"}',
                                      "headers": {"Content-Type": "application/vnd.lab+json"}}),
    ]:
        headers = {**auth(admin), **kwargs.pop("headers", {})}
        r = await client.request(method, path, headers=headers, **kwargs)
        assert r.status_code == 422, (method, path, kwargs, r.status_code, r.text)
        assert r.json()["error"]["code"] == "validation_error" and "NUL" in r.json()["error"]["message"]
    literal = await client.post("/api/v1/api-keys", headers={**auth(admin), "Content-Type": "application/json"},
                                content=b'{"name": "C:\\\\u0000 backslash-u"}')
    assert literal.status_code == 201, literal.text
    assert (await client.get("/healthz?x=%00")).status_code == 200  # the probes have no text input


async def test_rate_limit_answers_429_with_retry_after(client, world, app):
    app.state.ctx.settings.rate_limit_requests = 3
    _, token = world.user("lab_user")
    codes = [(await client.get("/api/v1/me", headers=auth(token))).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = await client.get("/api/v1/me", headers=auth(token))
    assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limited"


async def test_dependency_down_is_503_with_retry_after(client, world):
    world.inference_down = True
    _, token = world.user("lab_user")
    before = world.count_records()
    r = await client.post("/api/v1/predictions", headers=auth(token), files={"file": ("a.png", png_bytes())})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "service_unavailable"
    assert world.count_records() == before


async def test_healthz_and_readyz(client, peers):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["dependencies"]["inference"] == "SERVING"
    _, hs = peers
    await hs.set("hemovision.inference.v1.InferenceService", health_pb2.HealthCheckResponse.NOT_SERVING)
    r = await client.get("/readyz")
    assert r.status_code == 503 and "inference" in r.json()["error"]["message"] and r.headers["Retry-After"]


class _FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code, details="d"):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize("code,status", [
    (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.INVALID_ARGUMENT, 422),
    (grpc.StatusCode.UNAUTHENTICATED, 401), (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.ALREADY_EXISTS, 409), (grpc.StatusCode.FAILED_PRECONDITION, 409),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429), (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504), (grpc.StatusCode.INTERNAL, 502),
])
def test_error_table(code, status):
    assert GRPC_TO_HTTP[code].status == status
    err = api_error_from_grpc(_FakeRpcError(code, "secret internals"))
    assert err.status == status
    if status in (429, 503):
        assert err.headers["Retry-After"]
    if status == 502:
        assert "secret" not in err.message


async def test_unknown_route_and_method_are_json(client):
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.put("/api/v1/me")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    # Allow names every method of the resource, not only the first route's (GET and DELETE here)
    r = await client.put("/api/v1/predictions/00000000-0000-0000-0000-000000000001")
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET, HEAD"


@pytest.mark.parametrize("reason,status", [
    ("too_large", 413), ("too_many_pixels", 413), ("not_an_image", 415), ("unsupported_type", 415),
    ("truncated", 422), ("multi_frame", 422), ("corrupt", 422), ("polyglot", 422), ("empty", 422),
])
def test_preprocess_rejections_map_to_http(reason, status):
    """One image's PreprocessError (passed on by inference) -> the HTTP status the contract gives it."""
    from hemovision.preprocess.v1 import preprocess_pb2
    from hemovision_gateway.errors import api_error_from_preprocess_item

    err = api_error_from_preprocess_item(preprocess_pb2.PreprocessError(reason=reason, message="why"))
    assert (err.status, err.code, err.message) == (status, reason, "why")
    bad = api_error_from_preprocess_item(preprocess_pb2.PreprocessError(reason="invalid_request", message="no spec"))
    assert (bad.status, bad.code) == (422, "invalid_argument")
