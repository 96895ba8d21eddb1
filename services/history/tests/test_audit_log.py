"""The audit log as an auditor needs it: AppendAuditEvents for service tokens only (idempotent),
client IP and source on every event, the search filters and their scoping, and the append-only
guarantee enforced by PostgreSQL for the service's connection and its runtime role."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from sqlalchemy import create_engine, text
from hemovision_database import as_role
from sqlalchemy.exc import DBAPIError

from history_factories import User, make_prediction, png_bytes

from hemovision_history.blobstore import LocalBlobStore
from hemovision_history.server import create_server
from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE

T = 10


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def event(action="auth.login", *, org="", user="", occurred_at=None, **kw) -> history_pb2.AuditEventInput:
    return history_pb2.AuditEventInput(
        id=kw.pop("id", str(uuid.uuid4())), organization_id=org, user_id=user, action=action,
        occurred_at=ts(occurred_at) if occurred_at else None, **kw)


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def list_all(stub, caller: User, **filters) -> list[history_pb2.AuditEvent]:
    reply = await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(
        page=common_pb2.PageRequest(limit=200), **filters), metadata=caller.metadata, timeout=T)
    return list(reply.items)


# ---- AppendAuditEvents -------------------------------------------------------------------


async def test_append_is_for_allowed_service_tokens_only(stub):
    request = history_pb2.AppendAuditEventsRequest(events=[event()])
    for caller in (User.new(), User.new(role="org_admin"), User.new(role="platform_admin"),
                   User.new(role="platform_admin", act="gateway"), User.new(act="reports")):
        assert await code_of(stub.AppendAuditEvents(request, metadata=caller.metadata, timeout=T)) \
            == grpc.StatusCode.PERMISSION_DENIED
    reply = await stub.AppendAuditEvents(request, metadata=User.new(role="platform_admin", act="auth").metadata,
                                         timeout=T)
    assert list(reply.ids) == [request.events[0].id]
    assert await code_of(stub.AppendAuditEvents(request, metadata=(("authorization", "Bearer nope"),), timeout=T)) \
        == grpc.StatusCode.UNAUTHENTICATED


async def test_append_is_idempotent_and_keeps_source_ip_and_time(stub):
    auth = User.new(role="platform_admin", act="auth")
    admin = User.new(role="org_admin")
    when = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
    events = [
        event("auth.login", org=admin.organization_id, user=admin.user_id, occurred_at=when, client_ip="203.0.113.9",
              target_type="user", target_id=admin.user_id, details_json='{"method": "password"}'),
        event("auth.login_failed", org="", details_json='{"email_domain": "example.org"}', client_ip="2001:db8::1"),
    ]
    first = await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=events), metadata=auth.metadata,
                                         timeout=T)
    # A redelivered outbox batch (and a repeat inside one call) stores nothing twice.
    again = await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=events + events[:1]),
                                         metadata=auth.metadata, timeout=T)
    assert list(first.ids) == list(again.ids) == [e.id for e in events]

    mine = await list_all(stub, admin)
    assert [e.id for e in mine] == [events[0].id]
    got = mine[0]
    assert (got.source, got.client_ip, got.user_id, got.action) == ("auth", "203.0.113.9", admin.user_id, "auth.login")
    assert got.created_at.ToDatetime(tzinfo=UTC) == when
    assert json.loads(got.details_json) == {"method": "password"}
    platform = await list_all(stub, User.new(role="platform_admin"), action_prefix="auth.login_failed")
    assert [(e.id, e.source, e.client_ip) for e in platform] == [(events[1].id, "auth", "2001:db8::1")]


@pytest.mark.parametrize("bad", [
    {"id": "not-a-uuid"},
    {"action": "Login"},
    {"details_json": "[1, 2]"},
    {"details_json": "{"},
    {"client_ip": "10.0.0.300"},
    {"target_id": "x" * 129},
    {"occurred_at": datetime.now(UTC) + timedelta(days=1)},
])
async def test_append_validates_every_event(stub, bad):
    auth = User.new(role="platform_admin", act="auth")
    good = event()
    bad_event = event(**{"action": "auth.login", **bad})
    reply = stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=[good, bad_event]),
                                   metadata=auth.metadata, timeout=T)
    assert await code_of(reply) == grpc.StatusCode.INVALID_ARGUMENT
    # all or nothing: the good event of the refused call was not stored either
    assert good.id not in [e.id for e in await list_all(stub, User.new(role="platform_admin"))]


async def test_append_takes_at_most_500_events(stub):
    training = User.new(role="ml_engineer", act="training")
    too_many = history_pb2.AppendAuditEventsRequest(events=[event("model.activate") for _ in range(501)])
    assert await code_of(stub.AppendAuditEvents(too_many, metadata=training.metadata, timeout=T)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    ok = history_pb2.AppendAuditEventsRequest(events=[event("model.activate") for _ in range(500)])
    assert len((await stub.AppendAuditEvents(ok, metadata=training.metadata, timeout=T)).ids) == 500


# ---- RecordAuditEvent: client IP and source ------------------------------------------------


async def test_record_stores_client_ip_from_metadata_and_source(stub):
    admin = User.new(role="org_admin")
    recorded = await stub.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(action="report.download", target_type="prediction", target_id="p-1"),
        metadata=admin.from_ip("198.51.100.7"), timeout=T)
    assert (recorded.client_ip, recorded.source) == ("198.51.100.7", "history")
    # an on-behalf-of token names the service that recorded it
    training = User.new(organization_id=admin.organization_id, role="org_admin", act="training")
    forwarded = await stub.RecordAuditEvent(history_pb2.RecordAuditEventRequest(action="model.adaptation.start"),
                                            metadata=training.metadata, timeout=T)
    assert (forwarded.client_ip, forwarded.source) == ("", "training")
    # the metadata is informational: a malformed address is dropped, the event still recorded
    odd = await stub.RecordAuditEvent(history_pb2.RecordAuditEventRequest(action="report.download"),
                                      metadata=admin.from_ip("not-an-ip"), timeout=T)
    assert odd.client_ip == ""
    listed = {e.id: e for e in await list_all(stub, admin)}
    assert (listed[recorded.id].client_ip, listed[forwarded.id].source) == ("198.51.100.7", "training")


async def test_history_events_carry_the_client_ip(stub):
    alice = User.new(role="org_admin")
    p = await stub.RecordPrediction(history_pb2.RecordPredictionRequest(prediction=make_prediction()),
                                    metadata=alice.metadata, timeout=T)
    await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=p.id, label="monocyte"),
                                metadata=alice.from_ip("192.0.2.44"), timeout=T)
    await stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=p.id), metadata=alice.from_ip("192.0.2.45"),
                                timeout=T)
    events = {e.action: e for e in await list_all(stub, alice, target_id=p.id)}
    assert (events["prediction.review"].client_ip, events["prediction.delete"].client_ip) == ("192.0.2.44", "192.0.2.45")
    assert {e.source for e in events.values()} == {"history"}


# ---- search ---------------------------------------------------------------------------------


async def test_filters_combine_and_stay_inside_the_organization(stub):
    auth = User.new(role="platform_admin", act="auth")
    admin = User.new(role="org_admin")
    bob = admin.colleague()
    outsider = User.new(role="org_admin")
    base = datetime(2026, 10, 1, tzinfo=UTC)
    events = [
        event("auth.login", org=admin.organization_id, user=bob.user_id, occurred_at=base, target_id="t-1"),
        event("auth.logout", org=admin.organization_id, user=bob.user_id, occurred_at=base + timedelta(days=1)),
        event("auth.login", org=admin.organization_id, user=admin.user_id, occurred_at=base + timedelta(days=2),
              target_id="t-1"),
        event("auth.login", org=outsider.organization_id, user=bob.user_id, occurred_at=base, target_id="t-1"),
    ]
    await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=events), metadata=auth.metadata, timeout=T)
    ids = [e.id for e in events]

    async def found(caller, **filters):
        return {e.id for e in await list_all(stub, caller, **filters)}

    assert await found(admin, user_id=bob.user_id) == {ids[0], ids[1]}
    assert await found(admin, target_id="t-1") == {ids[0], ids[2]}
    assert await found(admin, action_prefix="auth.login", user_id=bob.user_id) == {ids[0]}
    window = common_pb2.TimeRange(start=ts(base + timedelta(hours=1)), end=ts(base + timedelta(days=2)))
    assert await found(admin, created=window) == {ids[1]}  # start inclusive, end exclusive
    assert await found(admin, created=common_pb2.TimeRange(start=ts(base + timedelta(days=2)))) >= {ids[2]}
    # the other organization's event with the same user and target never shows
    assert ids[3] not in await found(admin, target_id="t-1")
    assert await found(outsider, target_id="t-1") == {ids[3]}
    assert await found(User.new(role="platform_admin"), target_id="t-1") >= {ids[0], ids[2], ids[3]}

    reversed_window = common_pb2.TimeRange(start=ts(base + timedelta(days=2)), end=ts(base))
    assert await code_of(stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(created=reversed_window),
                                              metadata=admin.metadata, timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(user_id=bob.user_id),
                                              metadata=bob.metadata, timeout=T)) == grpc.StatusCode.PERMISSION_DENIED


# ---- append-only ----------------------------------------------------------------------------


def _refused(engine, sql: str, **params) -> str:
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        conn.execute(text(sql), params)
    return str(info.value.orig)


async def test_the_servers_connection_serves_but_cannot_change_the_audit_log(stub, history):
    """The server's own connection (the runtime role, as every deployment runs it) records, lists
    and deletes predictions, but UPDATE/DELETE/TRUNCATE of the audit log are refused by privilege
    (permission denied for the table), before the append-only trigger would be reached."""
    admin = User.new(role="org_admin")
    engine = history.service.engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == HISTORY_APP_ROLE
    p = await stub.RecordPrediction(history_pb2.RecordPredictionRequest(prediction=make_prediction(),
                                                                        image_png=png_bytes()),
                                    metadata=admin.metadata, timeout=T)
    listed = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=admin.metadata, timeout=T)
    assert p.id in {i.id for i in listed.items}
    await stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=p.id), metadata=admin.metadata, timeout=T)
    listed = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=admin.metadata, timeout=T)
    assert p.id not in {i.id for i in listed.items}
    deleted = [e for e in await list_all(stub, admin, action_prefix="prediction.delete") if e.target_id == p.id]
    assert len(deleted) == 1

    for sql in ("UPDATE history.audit_events SET action = 'x.y' WHERE id = :i",
                "DELETE FROM history.audit_events WHERE id = :i", "TRUNCATE history.audit_events"):
        assert "permission denied for table audit_events" in _refused(engine, sql, i=deleted[0].id)
    with engine.connect() as conn:
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            assert conn.execute(text("SELECT has_table_privilege('history.audit_events', :p)"),
                                {"p": privilege}).scalar() is False
        assert conn.execute(text("SELECT pg_has_role(:r, 'MEMBER')"), {"r": AUDIT_RETENTION_ROLE}).scalar() is False
    assert [e.id for e in await list_all(stub, admin, action_prefix="prediction.delete")
            if e.target_id == p.id] == [deleted[0].id]


# What the runtime role may do on each table of schema `history` (every migration's tables: a
# table added later without its grant fails here, not in production).
RUNTIME_PRIVILEGES = {
    "audit_events": {"SELECT", "INSERT"},
    "alembic_version": {"SELECT"},
    "predictions": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "batches": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "batch_items": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "retention_policies": {"SELECT", "INSERT", "UPDATE", "DELETE"},
}


def test_runtime_role_privileges_cover_every_history_table(migrated_url):
    owner = create_engine(migrated_url)
    try:
        with owner.connect() as conn:
            relations = dict(conn.execute(text(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'history' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')")).all())
            assert {name for name, kind in relations.items() if kind != "S"} == set(RUNTIME_PRIVILEGES)
            for table, wanted in RUNTIME_PRIVILEGES.items():
                held = {p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
                        if conn.execute(text("SELECT has_table_privilege(:r, :t, :p)"),
                                        {"r": HISTORY_APP_ROLE, "t": f"history.{table}", "p": p}).scalar()}
                assert held == wanted, table
            for sequence in (name for name, kind in relations.items() if kind == "S"):  # none today
                assert conn.execute(text("SELECT has_sequence_privilege(:r, :s, 'USAGE')"),
                                    {"r": HISTORY_APP_ROLE, "s": f"history.{sequence}"}).scalar(), sequence
            role = conn.execute(text("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit "
                                     "FROM pg_roles WHERE rolname = :r"), {"r": HISTORY_APP_ROLE}).one()
            assert tuple(role) == (False, False, False, False, False)
            assert not conn.execute(text(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :r"),
                {"r": HISTORY_APP_ROLE}).scalar()
            assert not conn.execute(text("SELECT has_schema_privilege(:r, 'history', 'CREATE')"),
                                    {"r": HISTORY_APP_ROLE}).scalar()
    finally:
        owner.dispose()


async def test_audit_log_is_append_only_for_the_owner_too(stub, migrated_url):
    admin = User.new(role="org_admin")
    e = await stub.RecordAuditEvent(history_pb2.RecordAuditEventRequest(action="report.download"),
                                    metadata=admin.metadata, timeout=T)
    # the schema owner (a superuser in development): the trigger refuses it
    owner = create_engine(migrated_url)
    try:
        assert "append-only" in _refused(owner, "UPDATE history.audit_events SET action = 'x.y' WHERE id = :i", i=e.id)
        assert "append-only" in _refused(owner, "DELETE FROM history.audit_events WHERE id = :i", i=e.id)
        assert "append-only" in _refused(owner, "TRUNCATE history.audit_events")
        # the retention role (the owner is a member: SET LOCAL ROLE) may delete; never update
        with owner.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {AUDIT_RETENTION_ROLE}"))
            assert conn.execute(text("DELETE FROM history.audit_events WHERE id = :i"), {"i": e.id}).rowcount == 1
        with owner.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {AUDIT_RETENTION_ROLE}"))
            assert conn.execute(text("SELECT count(*) FROM history.audit_events WHERE id = :i"), {"i": e.id}).scalar() == 0
    finally:
        owner.dispose()

    runtime = create_engine(as_role(migrated_url, HISTORY_APP_ROLE))
    retention = create_engine(as_role(migrated_url, AUDIT_RETENTION_ROLE))
    try:
        kept = await stub.RecordAuditEvent(history_pb2.RecordAuditEventRequest(action="report.download"),
                                           metadata=admin.metadata, timeout=T)
        assert "permission denied" in _refused(runtime, "UPDATE history.audit_events SET action = 'x.y'")
        assert "permission denied" in _refused(runtime, "DELETE FROM history.audit_events WHERE id = :i", i=kept.id)
        assert "permission denied" in _refused(runtime, f"SET ROLE {AUDIT_RETENTION_ROLE}")
        # the retention role's own login: DELETE on the audit log only
        assert "permission denied" in _refused(retention, "UPDATE history.audit_events SET action = 'x.y'")
        assert "permission denied" in _refused(retention, "DELETE FROM history.predictions")
        assert "permission denied" in _refused(retention, "INSERT INTO history.audit_events (id, user_id, action) "
                                                          "VALUES (gen_random_uuid(), '', 'a.b')")
        with retention.begin() as conn:
            assert conn.execute(text("DELETE FROM history.audit_events WHERE id = :i"), {"i": kept.id}).rowcount == 1
    finally:
        runtime.dispose()
        retention.dispose()


async def test_server_runs_as_the_runtime_role(settings, migrated_url, redis_url, blob_root):
    """The restricted runtime role serves every RPC (records, reviews, deletes, audits, retention)."""
    from hemovision.history.v1 import history_pb2_grpc
    from hemovision_grpc_server import create_channel

    from history_factories import TOKENS

    app_settings = settings.model_copy(update={"database_url": as_role(migrated_url, HISTORY_APP_ROLE)})
    server = await create_server(app_settings, verifier=TOKENS.verifier(redis_url=redis_url),
                                 blobs=LocalBlobStore(blob_root))
    channel = create_channel(f"127.0.0.1:{server.port}")
    try:
        stub = history_pb2_grpc.HistoryServiceStub(channel)
        admin = User.new(role="org_admin")
        p = await stub.RecordPrediction(history_pb2.RecordPredictionRequest(prediction=make_prediction(),
                                                                            image_png=png_bytes()),
                                        metadata=admin.metadata, timeout=T)
        await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=p.id, label="monocyte"),
                                    metadata=admin.metadata, timeout=T)
        await stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=p.id), metadata=admin.metadata, timeout=T)
        await stub.AppendAuditEvents(history_pb2.AppendAuditEventsRequest(events=[event(org=admin.organization_id)]),
                                     metadata=User.new(role="platform_admin", act="auth").metadata, timeout=T)
        actions = {e.action for e in await list_all(stub, admin)}
        assert {"prediction.review", "prediction.delete", "auth.login"} <= actions
        policy = await server.service.retention.set_policy(
            _caller(admin), blob_days=7, record_days=None)
        assert policy.blob_days == 7
    finally:
        await channel.close()
        await server.stop(0)


def _caller(user: User):
    from hemovision_history import domain

    return domain.Caller(user_id=user.user_id, organization_id=user.organization_id, role=user.role)


def test_history_roles_are_confined_to_history(migrated_url):
    """With auth and training migrated into the same database (as in every deployment): the runtime
    role and the retention role hold nothing on the other schemas, may not create or drop tables,
    and are refused every audit-log attack but the one each exists for (the runtime role appends,
    the retention role deletes)."""
    from hemovision_auth.__main__ import migrate as migrate_auth
    from hemovision_auth.settings import Settings as AuthSettings
    from hemovision_database import run_migrations
    from hemovision_testkit.db_roles import AUDIT_LOG_ATTACKS, assert_confined
    from hemovision_training.__main__ import MIGRATIONS_DIR as TRAINING_MIGRATIONS

    migrate_auth(AuthSettings(database_url=migrated_url))
    run_migrations(migrations_dir=TRAINING_MIGRATIONS, url=migrated_url, schema="training")
    owner = create_engine(migrated_url)
    try:
        assert_confined(owner, as_role(migrated_url, HISTORY_APP_ROLE), HISTORY_APP_ROLE, "history",
                        attacks=[a for a in AUDIT_LOG_ATTACKS if not a.startswith("INSERT")])
        assert_confined(owner, as_role(migrated_url, AUDIT_RETENTION_ROLE), AUDIT_RETENTION_ROLE, "history",
                        attacks=[a for a in AUDIT_LOG_ATTACKS if not a.startswith("DELETE")])
    finally:
        owner.dispose()
