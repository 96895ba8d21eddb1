"""Migration 0002 on a database that holds data (audit rows get client_ip "" and source
"history"), a downgrade and upgrade again, and tables.py agreeing with the migrations."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from hemovision_database import create_db_engine, run_migrations
from hemovision_history.__main__ import MIGRATIONS_DIR


def test_0002_on_existing_rows_and_back(postgres_url):
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=postgres_url, schema="history", revision="0001")
    engine = create_db_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO history.audit_events (id, user_id, action) "
                              "VALUES (gen_random_uuid(), 'u1', 'model.activate')"))
        run_migrations(migrations_dir=MIGRATIONS_DIR, url=postgres_url, schema="history")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT client_ip, source FROM history.audit_events")).all() == [("", "history")]
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", postgres_url)
        cfg.attributes["version_table_schema"] = "history"
        command.downgrade(cfg, "0001")
        with engine.begin() as conn:  # the trigger went with the downgrade
            assert conn.execute(text("UPDATE history.audit_events SET action = 'model.rollback'")).rowcount == 1
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def test_tables_match_the_migrations(postgres_url):
    """tables.py (what the code queries) and the migrations (what the database holds) agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hemovision_history.tables import metadata

    run_migrations(migrations_dir=MIGRATIONS_DIR, url=postgres_url, schema="history")
    engine = create_db_engine(postgres_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_schemas": True,
                "include_name": lambda name, type_, parent: type_ != "schema" or name == "history"})
            diff = [d for d in compare_metadata(context, metadata) if "alembic_version" not in str(d)]
    finally:
        engine.dispose()
    assert diff == []


def test_role_passwords_come_from_the_urls(postgres_url):
    """`role-passwords` (compose runs it after migrate): the runtime and retention roles get the
    passwords of the URLs history signs in with as them, sent hashed; URLs without a password or
    as another user set nothing."""
    from history_factories import as_role
    from sqlalchemy.engine import make_url

    from hemovision_history.__main__ import main, migrate, set_role_passwords
    from hemovision_history.settings import Settings
    from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE

    migrate(Settings(database_url=postgres_url))

    def with_password(role: str, password: str) -> str:
        return make_url(as_role(postgres_url, role)).set(password=password).render_as_string(hide_password=False)

    assert set_role_passwords(Settings(database_url=postgres_url)) == []  # the owner's URL: nothing to set
    assert set_role_passwords(Settings(database_url=as_role(postgres_url, HISTORY_APP_ROLE),
                                       migrate_database_url=postgres_url)) == []  # no password
    engine = create_db_engine(postgres_url)
    try:
        assert main(["role-passwords"]) == 0  # the environment names no role URL: a no-op
        settings = Settings(database_url=with_password(HISTORY_APP_ROLE, "app 'pw"),
                            retention_database_url=with_password(AUDIT_RETENTION_ROLE, "ret-pw"),
                            migrate_database_url=postgres_url)
        assert set_role_passwords(settings) == [HISTORY_APP_ROLE, AUDIT_RETENTION_ROLE]
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (:a, :r)"),
                                       {"a": HISTORY_APP_ROLE, "r": AUDIT_RETENTION_ROLE}).all())
        assert set(stored) == {HISTORY_APP_ROLE, AUDIT_RETENTION_ROLE}
        assert all(v and v.startswith(("SCRAM-SHA-256$", "md5")) and "pw" not in v for v in stored.values())
    finally:
        # the test cluster trusts local connections: leave the cluster-wide roles as they were
        with engine.begin() as conn:
            conn.execute(text(f"ALTER ROLE {HISTORY_APP_ROLE} PASSWORD NULL"))
            conn.execute(text(f"ALTER ROLE {AUDIT_RETENTION_ROLE} PASSWORD NULL"))
        engine.dispose()
