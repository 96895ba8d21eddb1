"""Retention: per-organization policies (org_admin, own organization, audited) and the purge:
expired blobs and records go, fresh ones stay, other organizations are untouched, and audit
events older than the audit retention are deleted only through the retention role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2
from hemovision.history.v1 import history_pb2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from history_factories import User, make_prediction, png_bytes

from hemovision_database import create_db_engine
from hemovision_history import domain
from hemovision_history.blobstore import LocalBlobStore, blob_key
from hemovision_history.errors import InvalidRequest, NoOrganization, RoleRequired
from hemovision_history.server import build_service
from hemovision_history.tables import HISTORY_APP_ROLE

T = 10


def caller(user: User) -> domain.Caller:
    return domain.Caller(user_id=user.user_id, organization_id=user.organization_id, role=user.role,
                         client_ip="192.0.2.10")


@pytest.fixture
def service(settings, blob_root, retention_engine):
    """History as the purge runs it: the runtime role, audit deletions as the retention role."""
    svc = build_service(settings.model_copy(update={"retention_days": 20, "audit_retention_days": 400}),
                        blobs=LocalBlobStore(blob_root), audit_retention_engine=retention_engine)
    yield svc
    svc.engine.dispose()


async def test_policy_defaults_set_validate_and_audit(stub, service):
    admin = User.new(role="org_admin")
    default = await service.retention.get_policy(caller(admin))
    assert (default.blob_days, default.record_days, default.effective_blob_days) == (None, None, 20)

    set_ = await service.retention.set_policy(caller(admin), blob_days=7, record_days=90)
    assert (set_.blob_days, set_.record_days, set_.updated_by) == (7, 90, admin.user_id)
    again = await service.retention.get_policy(caller(admin))
    assert (again.blob_days, again.record_days, again.effective_blob_days) == (7, 90, 7)
    back = await service.retention.set_policy(caller(admin), blob_days=None, record_days=None)
    assert back.effective_blob_days == 20

    for bad in ({"blob_days": -1, "record_days": None}, {"blob_days": None, "record_days": 0},
                {"blob_days": 40_000, "record_days": None}):
        with pytest.raises(InvalidRequest):
            await service.retention.set_policy(caller(admin), **bad)
    for who in (admin.colleague("lab_user"), User.new(role="platform_admin"), User.new(role="ml_engineer")):
        with pytest.raises((RoleRequired, NoOrganization)):
            await service.retention.get_policy(caller(who))
    # another organization is untouched by this one's policy
    other = User.new(role="org_admin")
    assert (await service.retention.get_policy(caller(other))).blob_days is None

    events = (await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="retention."),
                                         metadata=admin.metadata, timeout=T)).items
    assert [e.action for e in events] == ["retention.update", "retention.update"]
    assert events[0].client_ip == "192.0.2.10" and '"after": {"blob_days": null' in events[0].details_json


async def _recorded(stub, user: User, age_days: int, engine) -> history_pb2.Prediction:
    p = await stub.RecordPrediction(history_pb2.RecordPredictionRequest(
        prediction=make_prediction(), image_png=png_bytes(), heatmap_png=png_bytes()), metadata=user.metadata, timeout=T)
    with engine.begin() as conn:
        conn.execute(text("UPDATE history.predictions SET created_at = now() - make_interval(days => :d) WHERE id = :i"),
                     {"d": age_days, "i": p.id})
    return p


async def test_purge_per_organization(stub, service, migrated_url, blob_root):
    engine = create_engine(migrated_url)
    a, b, c = (User.new(role="org_admin") for _ in range(3))
    # a: blobs 10 days, records 30 days; b: no policy (platform default: blobs 20 days); c: keeps blobs
    await service.retention.set_policy(caller(a), blob_days=10, record_days=30)
    await service.retention.set_policy(caller(c), blob_days=0, record_days=None)
    ages = [5, 15, 25, 40]
    made = {u.organization_id: {age: await _recorded(stub, u, age, engine) for age in ages} for u in (a, b, c)}
    batch = await stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=a.metadata, timeout=T)
    with engine.begin() as conn:
        conn.execute(text("UPDATE history.batches SET created_at = now() - interval '50 days' WHERE id = :i"),
                     {"i": batch.id})

    report = await service.retention.purge()

    def state(user: User, age: int) -> str:
        p = made[user.organization_id][age]
        on_disk = [(blob_root / blob_key(user.organization_id, p.id, k)).exists() for k in ("image", "heatmap")]
        with engine.connect() as conn:
            row = conn.execute(text("SELECT image_key, heatmap_key FROM history.predictions WHERE id = :i"),
                               {"i": p.id}).first()
        if row is None:
            assert not any(on_disk)
            return "deleted"
        assert all(on_disk) == (row.image_key is not None) and any(on_disk) == all(on_disk)
        return "blobs" if row.image_key else "record"

    assert [state(a, age) for age in ages] == ["blobs", "record", "record", "deleted"]
    assert [state(b, age) for age in ages] == ["blobs", "blobs", "record", "record"]
    assert [state(c, age) for age in ages] == ["blobs"] * 4
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM history.batches WHERE id = :i"), {"i": batch.id}).scalar() == 0
    engine.dispose()

    counts = {org: (o.blobs, o.records, o.batches) for org, o in report.organizations.items()}
    assert counts[a.organization_id] == (2, 1, 1) and counts[b.organization_id] == (2, 0, 0)
    assert c.organization_id not in counts
    # audited per organization with the counts, by the retention job
    for user, expected in ((a, '{"batches": 1, "blobs": 2, "records": 1}'), (b, '{"batches": 0, "blobs": 2, "records": 0}')):
        events = (await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="retention.purge"),
                                             metadata=user.metadata, timeout=T)).items
        assert [(e.details_json, e.source, e.user_id) for e in events] == [(expected, "retention", "")]
    assert not (await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="retention.purge"),
                                           metadata=c.metadata, timeout=T)).items
    # a second pass finds nothing left
    assert (await service.retention.purge()).as_dict()["purged_blobs"] == 0


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


async def test_audit_retention_only_through_the_retention_role(stub, settings, migrated_url, blob_root):
    admin = User.new(role="org_admin")
    now = datetime.now(UTC)
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=[
        history_pb2.AuditEventInput(id=old, organization_id=admin.organization_id, action="auth.login",
                                    occurred_at=_ts(now - timedelta(days=401))),
        history_pb2.AuditEventInput(id=recent, organization_id=admin.organization_id, action="auth.login",
                                    occurred_at=_ts(now - timedelta(days=399))),
    ]), metadata=User.new(role="platform_admin", act="auth").metadata, timeout=T)

    async def listed() -> set[str]:
        return {e.id for e in (await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="auth."),
                                                          metadata=admin.metadata, timeout=T)).items}

    # a purge whose audit connection is the runtime role (not a member of the retention role) fails
    # and deletes nothing
    runtime_url = make_url(migrated_url).set(username=HISTORY_APP_ROLE).render_as_string(hide_password=False)
    runtime = create_db_engine(runtime_url, pool_size=1)
    wrong = build_service(settings, blobs=LocalBlobStore(blob_root), audit_retention_engine=runtime)
    with pytest.raises(DBAPIError):
        await wrong.retention.purge()
    wrong.engine.dispose()
    runtime.dispose()
    assert await listed() == {old, recent}

    # keep forever: nothing goes
    keep = build_service(settings.model_copy(update={"audit_retention_days": 0}), blobs=LocalBlobStore(blob_root))
    assert (await keep.retention.purge()).audit_events == 0
    keep.engine.dispose()
    assert await listed() == {old, recent}

    # the job with the owner's URL and no retention URL (SET LOCAL ROLE to the retention role, of
    # which the migrating owner is a member) removes only the expired one
    job = build_service(settings.model_copy(update={"database_url": migrated_url}), blobs=LocalBlobStore(blob_root))
    report = await job.retention.purge()
    job.engine.dispose()
    assert report.audit_events >= 1
    assert await listed() == {recent}
    platform = (await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="audit.purge"),
                                           metadata=User.new(role="platform_admin").metadata, timeout=T)).items
    assert platform and platform[0].source == "retention" and '"audit_retention_days": 400' in platform[0].details_json


def test_purge_command_line_with_a_retention_url(settings, migrated_url, monkeypatch, capsys):
    from hemovision_history.__main__ import main

    monkeypatch.setenv("HV_HISTORY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HV_HISTORY_BLOB_ROOT", settings.blob_root)
    monkeypatch.setenv("HV_HISTORY_RETENTION_DATABASE_URL",
                       make_url(migrated_url).set(username="hemovision_audit_retention").render_as_string(False))
    assert main(["purge"]) == 0
    out = capsys.readouterr().out
    assert '"purged_audit_events"' in out and '"audit_retention_days": 400' in out


async def test_retention_policy_rpcs(stub):
    import grpc

    admin = User.new(role="org_admin")
    got = await stub.GetRetentionPolicy(history_pb2.GetRetentionPolicyRequest(), metadata=admin.metadata, timeout=T)
    assert (got.organization_id, got.HasField("blob_days"), got.HasField("record_days"), got.audit_retention_days) == (
        admin.organization_id, False, False, 400)
    set_ = await stub.SetRetentionPolicy(history_pb2.SetRetentionPolicyRequest(blob_days=0, record_days=30),
                                         metadata=admin.from_ip("192.0.2.7"), timeout=T)
    assert (set_.HasField("blob_days"), set_.blob_days, set_.record_days, set_.effective_blob_days) == (True, 0, 30, 0)
    assert set_.updated_by == admin.user_id and set_.HasField("updated_at")
    for bad in (history_pb2.SetRetentionPolicyRequest(blob_days=-1),
                history_pb2.SetRetentionPolicyRequest(record_days=0)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SetRetentionPolicy(bad, metadata=admin.metadata, timeout=T)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for who in (admin.colleague(), User.new(role="platform_admin")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetRetentionPolicy(history_pb2.GetRetentionPolicyRequest(), metadata=who.metadata, timeout=T)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
