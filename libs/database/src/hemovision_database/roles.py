"""Database roles of the schema-owning services (docs/decisions.md 55).

Each service (auth, history, training) migrates as the schema owner and serves as its own
restricted runtime role, which its migration creates and grants exactly what the code needs on
its own schema. This module holds what every service does alike: the idempotent creation of a
cluster-wide role (run by migrations: its SQL must stay the same for them), a URL signing in as a
role, and giving roles the passwords of the URLs a service signs in with (`<service>
role-passwords`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url


def create_login_role_sql(name: str) -> str:
    """`CREATE ROLE name LOGIN NOINHERIT` unless it exists. Roles are cluster-wide: another
    database's migration creating it at the same moment is not an error. Created without a
    password: under password authentication nobody signs in as it until one is set; under trust
    authentication (the development cluster) it signs in as it is."""
    return f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
    CREATE ROLE {name} LOGIN NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;  -- created concurrently by another database's migration
END $$"""


def grant_runtime_role_sql(schema: str, role: str, privileges: Mapping[str, str],
                           sequences: Iterable[str] = ()) -> list[str]:
    """The statements that give `role` USAGE on `schema`, `privileges` ({table: "SELECT, INSERT"})
    on its tables and USAGE (nextval for a serial id) on `sequences`: nothing else, so a table a
    later migration adds is out of reach until that migration grants it."""
    return [f'GRANT USAGE ON SCHEMA "{schema}" TO {role}',
            *(f'GRANT {granted} ON "{schema}".{table} TO {role}' for table, granted in privileges.items()),
            *(f'GRANT USAGE ON SEQUENCE "{schema}".{sequence} TO {role}' for sequence in sequences)]


def revoke_runtime_role_sql(schema: str, role: str) -> list[str]:
    """The downgrade of grant_runtime_role_sql: every privilege of `role` on `schema` revoked; the
    role itself stays (cluster-wide: other databases of the cluster may hold its privileges)."""
    return [f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}',
            f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM {role}',
            f'REVOKE USAGE ON SCHEMA "{schema}" FROM {role}']


def as_role(url: str, role: str) -> str:
    """`url` signing in as `role` instead: same host, port and database, no password (a cluster
    that trusts local connections: the development stack, the tests)."""
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def set_role_passwords(migrate_url: str, urls: Iterable[tuple[str, str]]) -> list[str]:
    """Gives each role of `urls` ((url, role) pairs) the password of its URL, through the migrating
    connection `migrate_url`; a URL that is empty, has no password or signs in as another user is
    left out. The password is sent hashed (SCRAM-SHA-256, or whatever the server's
    password_encryption says), never in clear. Returns the roles whose password it set."""
    from psycopg2.extensions import encrypt_password

    wanted = []
    for url, role in urls:
        parsed = make_url(url) if url else None
        if parsed is not None and parsed.username == role and parsed.password:
            wanted.append((role, str(parsed.password)))
    if not wanted:
        return []
    engine = create_engine(migrate_url)
    try:
        with engine.begin() as conn:
            dbapi = conn.connection.dbapi_connection
            for role, password in wanted:
                # a utility statement takes no bind parameters: psycopg2 quotes the literal client-side
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD %s", (encrypt_password(password, role, dbapi),))
    finally:
        engine.dispose()
    return [role for role, _ in wanted]


__all__ = ["as_role", "create_login_role_sql", "grant_runtime_role_sql", "revoke_runtime_role_sql",
           "set_role_passwords"]
