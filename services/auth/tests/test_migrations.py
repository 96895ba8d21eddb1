"""Migration 0002 on a database that holds data: existing refresh families become sessions."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text

from hemovision_database import create_db_engine, run_migrations

MIGRATIONS = Path(__file__).parents[1] / "src" / "hemovision_auth" / "migrations"


def test_0002_backfills_sessions_from_refresh_families(postgres_url):
    run_migrations(migrations_dir=MIGRATIONS, url=postgres_url, schema="auth", revision="0001")
    engine = create_db_engine(postgres_url)
    user, live, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO auth.users (id, email, password_hash, role) VALUES (:u, 'a@lab.example', 'x', 'platform_admin')"), {"u": user})
            for family, offset, revoked in ((live, 0, False), (live, 60, False), (ended, 0, True)):
                conn.execute(
                    text(
                        "INSERT INTO auth.refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at, revoked_at)"
                        " VALUES (:id, :u, :f, :h, now() - make_interval(secs => :age), now() + interval '1 day',"
                        " CASE WHEN :revoked THEN now() END)"
                    ),
                    {"id": uuid.uuid4(), "u": user, "f": family, "h": uuid.uuid4().hex, "age": 120 - offset, "revoked": revoked},
                )
        run_migrations(migrations_dir=MIGRATIONS, url=postgres_url, schema="auth")
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(text("SELECT * FROM auth.sessions"))}
            assert set(rows) == {live, ended}
            assert rows[live].user_id == user and rows[live].revoked_at is None
            assert (rows[live].last_used_at - rows[live].created_at).total_seconds() == 60
            assert rows[live].client_ip == "" and rows[live].user_agent == ""
            assert rows[ended].revoked_at is not None
            for table in ("login_attempts", "audit_outbox"):
                assert conn.execute(text(f"SELECT count(*) FROM auth.{table}")).scalar() == 0
    finally:
        engine.dispose()


def test_tables_match_the_migrations(postgres_url):
    """tables.py (what the code queries) and the migrations (what the database holds) agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hemovision_auth.tables import metadata

    run_migrations(migrations_dir=MIGRATIONS, url=postgres_url, schema="auth")
    engine = create_db_engine(postgres_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_schemas": True, "include_name": lambda name, type_, parent: type_ != "schema" or name == "auth"}
            )
            diff = [d for d in compare_metadata(context, metadata) if "alembic_version" not in str(d)]
    finally:
        engine.dispose()
    assert diff == []
