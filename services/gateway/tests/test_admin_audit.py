"""The audit search and export over REST, against the real history service on a real PostgreSQL
(the other peers are the usual fakes): scoping, filters, paging inside the export, CSV injection
safety, and the export's own audit event."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_grpc_server import create_channel
from hemovision_tokens import bearer_metadata

from gateway_fakes import auth

from hemovision_gateway import Settings
from hemovision_history.__main__ import migrate
from hemovision_history.blobstore import LocalBlobStore
from hemovision_history.server import create_server
from hemovision_history.settings import Settings as HistorySettings

T = 10


@pytest.fixture(scope="module")
def history_db(postgres_url: str) -> str:
    migrate(HistorySettings(database_url=postgres_url))
    return postgres_url


@pytest.fixture
async def history(history_db, world, redis_url, tmp_path):
    settings = HistorySettings(port=0, database_url=history_db, blob_root=str(tmp_path / "blobs"), db_pool_size=2)
    server = await create_server(settings, verifier=world.factory.verifier(redis_url=redis_url),
                                 blobs=LocalBlobStore(settings.blob_root))
    channel = create_channel(f"127.0.0.1:{server.port}")
    yield server, history_pb2_grpc.HistoryServiceStub(channel)
    await channel.close()
    await server.stop(0)


@pytest.fixture
def settings(peers, history, redis_url, tmp_path) -> Settings:
    from gateway_fakes import SERVICE_SECRET

    addr, _ = peers
    return Settings(
        auth_addr=addr, inference_addr=addr, history_addr=f"127.0.0.1:{history[0].port}", reports_addr=addr,
        training_addr=addr, redis_url=redis_url, upload_dir=str(tmp_path / "uploads"), batch_inline=True,
        service_secret=SERVICE_SECRET, rate_limit_requests=10_000, rate_limit_auth_requests=10_000,
    )


async def _append(stub, world, events) -> None:
    token = world.factory.issue(role="platform_admin", act="auth")
    await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=events), metadata=bearer_metadata(token),
                                 timeout=T)


def _event(org: str, action: str = "auth.login", **kw) -> history_pb2.AuditEventInput:
    return history_pb2.AuditEventInput(id=str(uuid.uuid4()), organization_id=org, action=action, **kw)


async def test_search_is_typed_filtered_and_scoped(client, world, history):
    _, stub = history
    admin, admin_token = world.user("org_admin")
    other, other_token = world.user("org_admin")
    mine = _event(admin.organization_id, user_id=admin.id, target_id="t-1", client_ip="203.0.113.5")
    await _append(stub, world, [mine, _event(admin.organization_id, "model.activate"),
                                _event(other.organization_id, user_id=admin.id, target_id="t-1")])

    r = await client.get("/api/v1/admin/audit", params={"user_id": admin.id}, headers=auth(admin_token))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["id"] for i in items] == [mine.id]
    assert items[0] | {"created_at": None} == {
        "id": mine.id, "organization_id": admin.organization_id, "user_id": admin.id, "action": "auth.login",
        "target_type": "", "target_id": "t-1", "details_json": "{}", "created_at": None, "client_ip": "203.0.113.5",
        "source": "auth"}
    prefixed = await client.get("/api/v1/admin/audit", params={"action_prefix": "model."}, headers=auth(admin_token))
    assert [i["action"] for i in prefixed.json()["items"]] == ["model.activate"]
    theirs = await client.get("/api/v1/admin/audit", params={"target_id": "t-1"}, headers=auth(other_token))
    assert [i["organization_id"] for i in theirs.json()["items"]] == [other.organization_id]
    _, platform_token = world.user("platform_admin")
    everyone = await client.get("/api/v1/admin/audit", params={"target_id": "t-1", "limit": 200},
                                headers=auth(platform_token))
    assert {admin.organization_id, other.organization_id} <= {i["organization_id"] for i in everyone.json()["items"]}

    window = await client.get("/api/v1/admin/audit", params={"from": "2030-01-01T00:00:00Z"}, headers=auth(admin_token))
    assert window.status_code == 200 and window.json()["items"] == []
    backwards = await client.get("/api/v1/admin/audit", params={"from": "2026-02-01", "to": "2026-01-01"},
                                 headers=auth(admin_token))
    assert backwards.status_code == 422
    _, lab_token = world.user("lab_user", org=admin.organization_id)
    assert (await client.get("/api/v1/admin/audit", headers=auth(lab_token))).status_code == 403
    assert (await client.get("/api/v1/admin/audit/export", headers=auth(lab_token))).status_code == 403


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_export_streams_every_page_injection_safe_and_is_audited(client, world, history, fmt):
    _, stub = history
    admin, token = world.user("org_admin")
    hostile = _event(admin.organization_id, "auth.login_failed", target_id="=HYPERLINK(\"http://x\")",
                     target_type="+cmd", user_id="@evil", details_json='{"note": "-2+3"}')
    await _append(stub, world, [_event(admin.organization_id, "auth.login") for _ in range(250)] + [hostile])
    await _append(stub, world, [_event(str(uuid.uuid4()), "auth.login")])  # another organization

    r = await client.get("/api/v1/admin/audit/export", params={"format": fmt, "action_prefix": "auth."},
                         headers=auth(token))
    assert r.status_code == 200, r.text
    assert f'filename="hemovision-audit.{fmt}"' in r.headers["content-disposition"]
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.text)))
        by_id = {row["id"]: row for row in rows}
        assert (by_id[hostile.id]["target_id"], by_id[hostile.id]["target_type"], by_id[hostile.id]["user_id"]) == (
            "'=HYPERLINK(\"http://x\")", "'+cmd", "'@evil")
        assert all(row[c][:1] not in "=+-@" or not row[c] for row in rows for c in row)
    else:
        rows = json.loads(r.text)["items"]
        assert next(e for e in rows if e["id"] == hostile.id)["target_id"] == "=HYPERLINK(\"http://x\")"
    assert len(rows) == 251  # more than one internal page of 200, only this organization's
    assert {row["organization_id"] for row in rows} == {admin.organization_id}

    audited = await client.get("/api/v1/admin/audit", params={"action_prefix": "audit.export"}, headers=auth(token))
    event = audited.json()["items"][0]
    assert event["user_id"] == admin.id and event["source"] == "history"
    assert event["client_ip"] == "10.0.0.1"  # the HTTP client, forwarded as request-origin metadata
    assert json.loads(event["details_json"])["format"] == fmt
    assert json.loads(event["details_json"])["filters"]["action_prefix"] == "auth."


async def test_export_refuses_an_unknown_format(client, world):
    _, token = world.user("org_admin")
    r = await client.get("/api/v1/admin/audit/export", params={"format": "xml"}, headers=auth(token))
    assert r.status_code == 422


async def test_retention_policy_over_rest(client, world):
    admin, token = world.user("org_admin")
    r = await client.get("/api/v1/admin/retention", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json() | {"updated_at": None} == {
        "organization_id": admin.organization_id, "blob_days": None, "record_days": None, "default_blob_days": 0,
        "effective_blob_days": 0, "audit_retention_days": 400, "updated_by": None, "updated_at": None}
    put = await client.put("/api/v1/admin/retention", json={"blob_days": 30, "record_days": 365}, headers=auth(token))
    assert put.status_code == 200, put.text
    assert (put.json()["blob_days"], put.json()["record_days"], put.json()["effective_blob_days"],
            put.json()["updated_by"]) == (30, 365, 30, admin.id)
    assert (await client.get("/api/v1/admin/retention", headers=auth(token))).json()["record_days"] == 365
    cleared = await client.put("/api/v1/admin/retention", json={"blob_days": None}, headers=auth(token))
    assert (cleared.json()["blob_days"], cleared.json()["record_days"]) == (None, None)
    for bad in ({"blob_days": -1}, {"record_days": 0}, {"blob_days": 99_999}, {"blob_days": "x"}):
        assert (await client.put("/api/v1/admin/retention", json=bad, headers=auth(token))).status_code == 422
    _, lab = world.user("lab_user", org=admin.organization_id)
    assert (await client.get("/api/v1/admin/retention", headers=auth(lab))).status_code == 403
    _, platform = world.user("platform_admin")
    assert (await client.get("/api/v1/admin/retention", headers=auth(platform))).status_code == 403
    audited = await client.get("/api/v1/admin/audit", params={"action_prefix": "retention."}, headers=auth(token))
    assert [e["action"] for e in audited.json()["items"]] == ["retention.update", "retention.update"]
