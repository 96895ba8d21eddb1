"""The runtime role hemovision_auth_app (migration 0003, docs/decisions.md 55): exactly what the
auth code does on schema auth, and nothing on the other services' schemas. Every other test of
this suite runs the server as this role (conftest.py), so these privileges are proven enough."""

from __future__ import annotations

import pytest

from hemovision_auth.tables import AUTH_APP_ROLE
from hemovision_database import create_db_engine, run_migrations
from hemovision_history.__main__ import migrate as migrate_history
from hemovision_history.settings import Settings as HistorySettings
from hemovision_testkit.db_roles import assert_confined, password_check, sequence_privileges, table_privileges
from hemovision_training.__main__ import MIGRATIONS_DIR as TRAINING_MIGRATIONS

# Every table of schema auth (a table added later without its grant fails here, not in production).
RUNTIME_PRIVILEGES = {
    "organizations": {"SELECT", "INSERT"},
    "users": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "refresh_tokens": {"SELECT", "INSERT", "UPDATE"},
    "sessions": {"SELECT", "INSERT", "UPDATE"},
    "signing_keys": {"SELECT", "INSERT", "UPDATE"},
    "api_keys": {"SELECT", "INSERT", "UPDATE"},
    "invitations": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "email_tokens": {"SELECT", "INSERT", "UPDATE"},
    "login_attempts": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    # a forwarding queue: the recorded event itself cannot be rewritten
    "audit_outbox": {"SELECT", "INSERT", "DELETE", "UPDATE (attempts, forwarded_at, last_error, next_attempt_at)"},
    "alembic_version": set(),
}


@pytest.fixture(scope="module")
def owner(migrated_url):
    engine = create_db_engine(migrated_url)
    yield engine
    engine.dispose()


def test_runtime_role_holds_exactly_what_the_code_does(owner):
    assert table_privileges(owner, AUTH_APP_ROLE, "auth") == RUNTIME_PRIVILEGES
    assert sequence_privileges(owner, AUTH_APP_ROLE, "auth") == {}  # UUID and e-mail keys only


async def test_runtime_role_cannot_touch_the_audit_log_or_other_schemas(auth, owner, migrated_url, runtime_url):
    """With history and training migrated into the same database (as in every deployment): the
    server's own connection is the runtime role, and as it history's audit log cannot be written,
    rewritten or have its append-only trigger dropped, and training's tables cannot be read."""
    migrate_history(HistorySettings(database_url=migrated_url))
    run_migrations(migrations_dir=TRAINING_MIGRATIONS, url=migrated_url, schema="training")
    with auth.server.service.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == AUTH_APP_ROLE
    assert_confined(owner, runtime_url, AUTH_APP_ROLE, "auth")


def test_role_passwords_sets_the_runtime_roles_password_from_its_url(owner, migrated_url, monkeypatch, capsys):
    """`role-passwords` (compose runs it after migrate): hemovision_auth_app gets the password of
    HV_AUTH_DATABASE_URL, through the migrate URL, sent hashed; without a password nothing is set."""
    from sqlalchemy.engine import make_url

    from hemovision_auth.__main__ import main
    from hemovision_database import as_role

    monkeypatch.setenv("HV_AUTH_MIGRATE_DATABASE_URL", migrated_url)
    monkeypatch.setenv("HV_AUTH_DATABASE_URL", as_role(migrated_url, AUTH_APP_ROLE))
    assert main(["role-passwords"]) == 0
    assert "no role password to set" in capsys.readouterr().out
    with_password = make_url(as_role(migrated_url, AUTH_APP_ROLE)).set(password="auth 'pw")
    monkeypatch.setenv("HV_AUTH_DATABASE_URL", with_password.render_as_string(hide_password=False))
    with password_check(owner, AUTH_APP_ROLE, "auth 'pw"):
        assert main(["role-passwords"]) == 0
        assert f"role passwords set: {AUTH_APP_ROLE}" in capsys.readouterr().out
