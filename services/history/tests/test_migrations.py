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
