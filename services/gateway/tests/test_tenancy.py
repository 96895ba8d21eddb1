"""Nobody reads or changes another organization's objects through any endpoint.

The routes are enumerated from the OpenAPI schema: every route with a path parameter must
be listed in CASES (checked cross-organization: 404 as if it did not exist) or in
PLATFORM_SCOPED (objects that belong to no organization, guarded by role instead)."""

from __future__ import annotations

import asyncio

import pytest

from gateway_fakes import auth, png_bytes

# (method, path template) -> what organization B gets for organization A's object.
CASES = {
    ("GET", "/api/v1/predictions/{prediction_id}"): 404,
    ("DELETE", "/api/v1/predictions/{prediction_id}"): 404,
    ("GET", "/api/v1/predictions/{prediction_id}/heatmap.png"): 404,
    ("GET", "/api/v1/predictions/{prediction_id}/image.png"): 404,
    ("GET", "/api/v1/predictions/{prediction_id}/report.pdf"): 404,
    ("POST", "/api/v1/predictions/{prediction_id}/review"): 404,
    ("GET", "/api/v1/batches/{batch_id}"): 404,
    ("GET", "/api/v1/batches/{batch_id}/events"): 404,
    ("GET", "/api/v1/batches/{batch_id}/report.pdf"): 404,
    ("GET", "/api/v1/admin/users/{user_id}"): 404,
    ("POST", "/api/v1/admin/users/{user_id}/role"): 404,
    ("POST", "/api/v1/admin/users/{user_id}/active"): 404,
    ("DELETE", "/api/v1/admin/users/{user_id}"): 404,
    ("DELETE", "/api/v1/api-keys/{key_id}"): 404,
    ("GET", "/api/v1/adaptations/{adaptation_id}"): 404,
    ("POST", "/api/v1/adaptations/{adaptation_id}/cancel"): 404,
}
# Model versions and training jobs are platform objects (no organization); lab users get 403
# (test_accounts_and_errors.test_lab_user_cannot_reach_admin_endpoints), anyone may list models.
PLATFORM_SCOPED = {
    ("GET", "/api/v1/models/{version}"),
    ("POST", "/api/v1/models/{version}/activate"),
    ("POST", "/api/v1/models/{version}/deprecate"),
    ("POST", "/api/v1/models/{version}/restore"),
    ("GET", "/api/v1/training-jobs/{job_id}"),
    ("POST", "/api/v1/training-jobs/{job_id}/cancel"),
    ("GET", "/api/v1/training-jobs/{job_id}/events"),
}
# Checked cross-organization (404, nothing changed) where the fake auth has sessions and lockout:
# test_sessions_and_origin.py (another user's session; a user of another organization).
COVERED_ELSEWHERE = {
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
    ("POST", "/api/v1/admin/users/{user_id}/sign-out-everywhere"),
    ("POST", "/api/v1/admin/users/{user_id}/unlock"),
}
BODIES = {
    "/api/v1/predictions/{prediction_id}/review": {"label": "lymphocyte"},
    "/api/v1/admin/users/{user_id}/role": {"role": "lab_user"},
    "/api/v1/admin/users/{user_id}/active": {"active": False},
}


def id_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for path, ops in app.openapi()["paths"].items():
        if "{" in path:
            routes.update((method.upper(), path) for method in ops)
    return routes


def test_every_route_with_an_id_is_covered(app):
    missing = id_routes(app) - set(CASES) - PLATFORM_SCOPED - COVERED_ELSEWHERE
    assert not missing, f"routes taking an id without a cross-organization test: {sorted(missing)}"


@pytest.mark.parametrize("route", sorted(CASES))
async def test_other_organization_gets_not_found(route, client, world):
    method, template = route
    a_admin, a_token = world.user("org_admin")
    a_colleague, _ = world.user("lab_user", org=a_admin.organization_id)
    _, b_token = world.user("org_admin")
    pred = (await client.post("/api/v1/predictions", headers=auth(a_token),
                              files={"file": ("a.png", png_bytes())})).json()["id"]
    batch = (await client.post("/api/v1/batches", headers=auth(a_token),
                               files={"files": ("a.png", png_bytes(), "image/png")})).json()["id"]
    for _ in range(100):  # let the batch's item finish in the background
        if world.items:
            break
        await asyncio.sleep(0.05)
    key = (await client.post("/api/v1/api-keys", headers=auth(a_token), json={"name": "k"})).json()["id"]
    world.add_reviewed(a_admin.organization_id, 20)
    adaptation = (await client.post("/api/v1/adaptations", headers=auth(a_token), json={})).json()["id"]
    path = template.format(prediction_id=pred, batch_id=batch, user_id=a_colleague.id, key_id=key,
                           adaptation_id=adaptation)

    def state():
        return (len(world.predictions), len(world.users), len(world.api_keys),
                [(a.status, a.epoch) for a in world.adaptations.values()])

    before = state()
    r = await client.request(method, path, headers=auth(b_token), json=BODIES.get(template))
    assert r.status_code == CASES[route], (route, r.text)
    assert r.json()["error"]["code"] == "not_found"
    assert state() == before
    # ...while organization A itself can reach it.
    own = await client.request("GET" if method == "GET" else method, path, headers=auth(a_token),
                               json=BODIES.get(template))
    assert own.status_code < 300, (route, own.text)
