"""What a service's restricted runtime role may do in PostgreSQL (docs/decisions.md 55), read from
the catalog and tried for real: its privileges per table of its own schema, and that it can touch
nothing of the other services' schemas (history's append-only audit log above all)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

SCHEMAS = ("auth", "history", "training")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
# What a compromised process would try on history's audit log: rewrite it, or undo its guard.
AUDIT_LOG_ATTACKS = (
    "INSERT INTO history.audit_events (id, user_id, action) VALUES (gen_random_uuid(), '', 'forged.event')",
    "UPDATE history.audit_events SET action = 'x.y'",
    "DELETE FROM history.audit_events",
    "TRUNCATE history.audit_events",
    "DROP TRIGGER audit_events_append_only ON history.audit_events",
    "ALTER TABLE history.audit_events DISABLE TRIGGER ALL",
    "DROP TABLE history.audit_events",
)


def _relations(conn: sa.Connection, schema: str, kinds: str) -> list[str]:
    return list(conn.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind::text = ANY(:k) ORDER BY c.relname"), {"s": schema, "k": list(kinds)}).scalars())


def table_privileges(owner: Engine, role: str, schema: str) -> dict[str, set[str]]:
    """{table: what `role` holds on it}, every table of `schema`; an UPDATE granted on some columns
    only reads "UPDATE (col, ...)"."""
    held: dict[str, set[str]] = {}
    with owner.connect() as conn:
        for table in _relations(conn, schema, "rp"):
            name = f'"{schema}".{table}'
            privileges = {p for p in TABLE_PRIVILEGES if conn.execute(
                text("SELECT has_table_privilege(:r, :t, :p)"), {"r": role, "t": name, "p": p}).scalar()}
            for p in ("SELECT", "INSERT", "UPDATE"):
                if p in privileges:
                    continue
                columns: list[str] = list(conn.execute(text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
                    "AND NOT attisdropped AND has_column_privilege(:r, attrelid, attnum, :p) ORDER BY attname"),
                    {"r": role, "t": name, "p": p}).scalars())
                if columns:
                    privileges.add(f"{p} ({', '.join(columns)})")
            held[table] = privileges
    return held


def sequence_privileges(owner: Engine, role: str, schema: str) -> dict[str, set[str]]:
    """{sequence: what `role` holds on it}, every sequence of `schema`."""
    with owner.connect() as conn:
        return {seq: {p for p in ("USAGE", "SELECT", "UPDATE") if conn.execute(
            text("SELECT has_sequence_privilege(:r, :s, :p)"), {"r": role, "s": f'"{schema}".{seq}', "p": p}).scalar()}
            for seq in _relations(conn, schema, "S")}


def refused(engine: Engine, sql: str) -> str:
    """The error PostgreSQL answers `sql` with (AssertionError if it runs)."""
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    except DBAPIError as exc:
        return str(exc.orig)
    raise AssertionError(f"{sql!r} ran")


def assert_confined(owner: Engine, role_url: str, role: str, own_schema: str,
                    attacks: Iterable[str] = AUDIT_LOG_ATTACKS) -> None:
    """`role` is a plain login (no superuser, CREATEROLE, CREATEDB, BYPASSRLS, INHERIT, member of
    no role), owns nothing and may not CREATE in its schema, holds no privilege on the other
    services' schemas and tables, and every statement of `attacks` (AUDIT_LOG_ATTACKS: history
    must be migrated into this database; history's own roles pass the ones they may run) and a
    read of each other schema's tables is refused to a login as it."""
    with owner.connect() as conn:
        attributes = conn.execute(text("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit "
                                       "FROM pg_roles WHERE rolname = :r"), {"r": role}).one()
        assert tuple(attributes) == (False, False, False, False, False), attributes
        assert not conn.execute(text("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                                     "WHERE r.rolname = :r"), {"r": role}).scalar(), f"{role} is a member of a role"
        assert not conn.execute(text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                                     "WHERE r.rolname = :r"), {"r": role}).scalar(), f"{role} owns a relation"
        assert not conn.execute(text("SELECT has_schema_privilege(:r, :s, 'CREATE')"),
                                {"r": role, "s": own_schema}).scalar(), f"{role} may CREATE in {own_schema}"
        others = [s for s in SCHEMAS if s != own_schema]
        present: set[str] = set(conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname = ANY(:s)"),
                                   {"s": others}).scalars())
    assert present == set(others), f"migrate {sorted(set(others) - present)} into this database first"
    for schema in others:
        with owner.connect() as conn:
            assert not conn.execute(text("SELECT has_schema_privilege(:r, :s, 'USAGE')"),
                                    {"r": role, "s": schema}).scalar(), f"{role}: USAGE on {schema}"
        assert all(not held for held in table_privileges(owner, role, schema).values()), (schema, role)
        assert all(not held for held in sequence_privileges(owner, role, schema).values()), (schema, role)
    engine = sa.create_engine(role_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == role
        for sql in attacks:
            answer = refused(engine, sql)
            assert "permission denied" in answer or "must be owner" in answer, (sql, answer)
        for schema in others:
            with owner.connect() as conn:
                tables = _relations(conn, schema, "rp")
            for table in tables:
                assert "permission denied" in refused(engine, f'SELECT 1 FROM "{schema}".{table} LIMIT 1'), table
        with owner.connect() as conn:
            own = _relations(conn, own_schema, "rp")
        assert own, f"schema {own_schema} has no table"
        answer = refused(engine, f'DROP TABLE "{own_schema}".{own[0]}')
        assert "must be owner" in answer or "permission denied" in answer, answer
        assert "permission denied" in refused(engine, f'CREATE TABLE "{own_schema}".intruder (id int)')
    finally:
        engine.dispose()


@contextmanager
def password_check(owner: Engine, role: str, clear: str) -> Iterator[None]:
    """Around a `role-passwords` run that should give `role` the password `clear`: afterwards the
    server stores it hashed (SCRAM-SHA-256 or md5, never the clear text); then the password is
    removed again (the test cluster trusts local connections: the cluster-wide role stays as it
    was for every other test)."""
    try:
        yield
        with owner.connect() as conn:
            stored = conn.execute(text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}).scalar()
        assert stored and stored.startswith(("SCRAM-SHA-256$", "md5")) and clear not in stored, stored
    finally:
        with owner.begin() as conn:
            conn.execute(text(f"ALTER ROLE {role} PASSWORD NULL"))
