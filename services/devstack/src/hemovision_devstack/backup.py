"""`hemovision backup DIR` / `hemovision restore DIR`: everything a HemoVision system stores, out
and back in (docs/deployment.md "Backup and restore").

A backup is a directory:
    database.dump   pg_dump --format=custom of the whole database (every service's schema)
    blobs/          the history blob store (stored images, heatmaps)
    models/         the model base (every published SavedModel version)
    manifest.json   when, from where, the database roles the dump's grants name, row counts

Restore writes into an EMPTY database (created if missing; refused if it already holds a
HemoVision schema), an empty blob root and model base, so it can never merge into or overwrite
a running system's data. The cluster-wide roles the grants name (the services' runtime roles and
history's audit-retention role) are created first when the target cluster lacks them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SCHEMAS = ("auth", "history", "training")
# Rows a restore is checked against (the manifest records them at backup time).
COUNTED_TABLES = ("auth.users", "auth.organizations", "history.predictions", "history.batches",
                  "history.audit_events", "training.model_versions")


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why."""


@dataclass(frozen=True)
class Stores:
    """Where a system keeps its data: the database, the blob root and the model base."""

    database_url: str
    blob_root: Path
    model_base: Path


def libpq_url(sqlalchemy_url: str) -> str:
    """'postgresql+psycopg2://u@h:5432/db' -> 'postgresql://u@h:5432/db' (what pg_dump reads)."""
    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _counts(engine: sa.Engine) -> dict[str, int]:
    counts = {}
    with engine.connect() as conn:
        for table in COUNTED_TABLES:
            schema, name = table.split(".")
            exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar()
            if exists:
                counts[table] = int(conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{name}"')).scalar_one())
    return counts


def _roles(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname LIKE 'hemovision\\_%' "
            "ORDER BY rolname")).all()
    return [{"name": r.rolname, "login": bool(r.rolcanlogin), "inherit": bool(r.rolinherit)} for r in rows]


def backup(stores: Stores, out: Path) -> dict:
    """Writes a backup of `stores` into `out` (a new or empty directory); returns the manifest."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a backup goes into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(stores.database_url)
    try:
        counts, roles = _counts(engine), _roles(engine)
    finally:
        engine.dispose()
    _run(["pg_dump", "--format=custom", "--no-owner", f"--file={out / 'database.dump'}",
          *[f"--schema={s}" for s in SCHEMAS], f"--dbname={libpq_url(stores.database_url)}"])
    for name, source in (("blobs", stores.blob_root), ("models", stores.model_base)):
        if source.exists():
            shutil.copytree(source, out / name, symlinks=False)
        else:
            (out / name).mkdir()
    manifest = {"format": 1, "created_at": datetime.now(UTC).isoformat(), "schemas": list(SCHEMAS),
                "counts": counts, "roles": roles,
                "source": {"database": make_url(stores.database_url).render_as_string(hide_password=True),
                           "blob_root": str(stores.blob_root), "model_base": str(stores.model_base)}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _create_database_if_missing(url: str) -> None:
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                 {"d": target.database}).scalar()
            if not found:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


def _create_roles(engine: sa.Engine, roles: list[dict]) -> None:
    with engine.begin() as conn:
        for role in roles:
            if not role["name"].replace("_", "").isalnum():
                raise BackupError(f"unexpected role name in the manifest: {role['name']!r}")
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role["name"]}).scalar():
                continue
            login = "LOGIN" if role["login"] else "NOLOGIN"
            inherit = "INHERIT" if role["inherit"] else "NOINHERIT"
            conn.execute(sa.text(f'CREATE ROLE "{role["name"]}" {login} {inherit}'))


def restore(source: Path, stores: Stores) -> dict:
    """Restores the backup in `source` into empty `stores`; returns the restored row counts
    (checked equal to the manifest's)."""
    source = source.resolve()
    manifest_path = source / "manifest.json"
    if not manifest_path.exists():
        raise BackupError(f"{source} is not a HemoVision backup (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    for target in (stores.blob_root, stores.model_base):
        if target.exists() and any(target.iterdir()):
            raise BackupError(f"{target} is not empty: restore into an empty blob root and model base")
    _create_database_if_missing(stores.database_url)
    engine = sa.create_engine(stores.database_url)
    try:
        with engine.connect() as conn:
            present = [s for s in manifest["schemas"] if conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"), {"s": s}).scalar()]
        if present:
            raise BackupError(f"the target database already has the schemas {present}: restore into an empty one")
        _create_roles(engine, manifest.get("roles", []))
        _run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq_url(stores.database_url)}",
              str(source / "database.dump")])
        counts = _counts(engine)
    finally:
        engine.dispose()
    if counts != manifest["counts"]:
        raise BackupError(f"restored row counts {counts} differ from the backup's {manifest['counts']}")
    for name, target in (("blobs", stores.blob_root), ("models", stores.model_base)):
        shutil.copytree(source / name, target, dirs_exist_ok=True)
    return counts
