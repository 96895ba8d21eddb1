"""The runtime role hemovision_training_app (migration 0005, docs/decisions.md 55): exactly what
the training server and worker do on schema training, and nothing on the other services' schemas.
Every other test of this suite runs the server (and the worker) as this role (conftest.py), so
these privileges are proven enough."""

from __future__ import annotations

from hemovision_auth.__main__ import MIGRATIONS as AUTH_MIGRATIONS
from hemovision_database import run_migrations
from hemovision_history.__main__ import migrate as migrate_history
from hemovision_history.settings import Settings as HistorySettings
from hemovision_testkit.db_roles import assert_confined, password_check, sequence_privileges, table_privileges
from hemovision_training.tables import TRAINING_APP_ROLE

# Every table of schema training (a table added later without its grant fails here, not in production).
RUNTIME_PRIVILEGES = {
    "model_versions": {"SELECT", "INSERT", "UPDATE"},
    "training_jobs": {"SELECT", "INSERT", "UPDATE"},
    "adaptation_inputs": {"SELECT", "INSERT", "DELETE"},
    "rollouts": {"SELECT", "INSERT", "UPDATE"},
    # the local audit log: an event is never rewritten, only marked forwarded
    "audit_log": {"SELECT", "INSERT", "UPDATE (forwarded)"},
    "alembic_version": set(),
}


def test_runtime_role_holds_exactly_what_the_code_does(engine):
    assert table_privileges(engine, TRAINING_APP_ROLE, "training") == RUNTIME_PRIVILEGES
    # nextval of the two BIGSERIAL ids
    assert sequence_privileges(engine, TRAINING_APP_ROLE, "training") == {
        "model_versions_id_seq": {"USAGE"}, "audit_log_id_seq": {"USAGE"}}


def test_runtime_role_cannot_touch_the_audit_log_or_other_schemas(engine, postgres_url, runtime_url, runtime_engine):
    """With auth and history migrated into the same database (as in every deployment): the
    servers' connection (conftest's runtime_engine) is the runtime role, and as it history's audit
    log cannot be written, rewritten or have its append-only trigger dropped, and auth's tables
    cannot be read."""
    migrate_history(HistorySettings(database_url=postgres_url))
    run_migrations(migrations_dir=AUTH_MIGRATIONS, url=postgres_url, schema="auth")
    with runtime_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == TRAINING_APP_ROLE
    assert_confined(engine, runtime_url, TRAINING_APP_ROLE, "training")


def test_role_passwords_sets_the_runtime_roles_password_from_its_url(engine, postgres_url, runtime_url, monkeypatch,
                                                                     capsys):
    """`role-passwords` (compose runs it after migrate) gives hemovision_training_app the password
    of HV_TRAINING_DATABASE_URL through the migrate URL; a URL without a password sets nothing."""
    from sqlalchemy.engine import make_url

    from hemovision_training.__main__ import main

    monkeypatch.setenv("HV_TRAINING_MIGRATE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("HV_TRAINING_DATABASE_URL", runtime_url)
    assert main(["role-passwords"]) == 0
    assert "no role password to set" in capsys.readouterr().out
    monkeypatch.setenv("HV_TRAINING_DATABASE_URL",
                       make_url(runtime_url).set(password="train-pw").render_as_string(hide_password=False))
    with password_check(engine, TRAINING_APP_ROLE, "train-pw"):
        assert main(["role-passwords"]) == 0
        assert f"role passwords set: {TRAINING_APP_ROLE}" in capsys.readouterr().out
