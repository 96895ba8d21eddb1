"""PostgreSQL plumbing shared by the services that own a schema (auth, history, training).

Each service keeps its own tables, its own Alembic migrations and its own schema;
this package only knows how to create a database, build an engine, run a service's
migrations with the version table inside that service's schema, and what every service does
alike with its restricted runtime role (roles.py).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from hemovision_database.roles import (
    as_role,
    create_login_role_sql,
    grant_runtime_role_sql,
    revoke_runtime_role_sql,
    set_role_passwords,
)


def ensure_database(url: str) -> bool:
    """Creates the database named in `url` if it is missing. Returns True if it created it."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            return not exists
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drops the database named in `url`, disconnecting its sessions first (tests)."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"),
                {"n": target.database},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"'))
    finally:
        admin.dispose()


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """A pooled engine with pre-ping, so a restarted PostgreSQL does not fail the next request."""
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800)


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or the connection was lost (a
    restart, a failover, a network cut): a dependency outage worth UNAVAILABLE and a retry, not
    an internal error. SQLAlchemy marks a lost connection `connection_invalidated`; a refused or
    dropped one arrives as OperationalError / InterfaceError (psycopg2 "server closed the
    connection unexpectedly", "could not connect", "the database system is starting up")."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))


def run_migrations(*, migrations_dir: Path, url: str, schema: str, revision: str = "head") -> None:
    """Runs a service's Alembic migrations up to `revision`, version table in `schema`.

    The service's env.py reads `sqlalchemy.url` and `version_table_schema` from the
    config's attributes set here, so no alembic.ini is needed.
    """
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["version_table_schema"] = schema
    command.upgrade(cfg, revision)


__all__ = [
    "as_role",
    "create_db_engine",
    "create_login_role_sql",
    "drop_database",
    "ensure_database",
    "grant_runtime_role_sql",
    "is_connection_error",
    "revoke_runtime_role_sql",
    "run_migrations",
    "set_role_passwords",
]
