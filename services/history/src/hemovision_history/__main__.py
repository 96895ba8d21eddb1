"""`python -m hemovision_history [serve|migrate|role-passwords|purge]` (console script hemovision-history).

serve           run the gRPC server (HV_HISTORY_PORT, default 50054) until SIGTERM
migrate         run the Alembic migrations of schema `history` (a one-off step, never at start-up;
                through HV_HISTORY_MIGRATE_DATABASE_URL when set)
role-passwords  give the runtime role hemovision_history_app and the retention role
                hemovision_audit_retention the passwords of the URLs history signs in with as them
                (HV_HISTORY_DATABASE_URL, HV_HISTORY_RETENTION_DATABASE_URL), through the migrating
                connection; a URL without a password, or signing in as another user, is left out.
                For setups whose URLs are the source of truth (docker-compose), run after migrate.
purge           one retention pass: stored images/heatmaps and (where an organization's policy says
                so) whole records past their retention, and audit events older than
                HV_HISTORY_AUDIT_RETENTION_DAYS (as the audit retention role, through
                HV_HISTORY_RETENTION_DATABASE_URL when set); meant for a scheduler (Celery beat in
                the development stack, a Kubernetes CronJob)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from hemovision_telemetry import configure_logging

from hemovision_history.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger("hemovision_history")


def migrate(settings: Settings) -> None:
    from hemovision_database import ensure_database, run_migrations

    url = settings.migrate_database_url or settings.database_url
    ensure_database(url)
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=url, schema="history")


def set_role_passwords(settings: Settings) -> list[str]:
    """See `role-passwords` above; returns the roles whose password it set
    (hemovision_database.set_role_passwords: sent hashed, never in clear)."""
    from hemovision_database import set_role_passwords as set_passwords

    from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE

    return set_passwords(settings.migrate_database_url or settings.database_url,
                         [(settings.database_url, HISTORY_APP_ROLE),
                          (settings.retention_database_url, AUDIT_RETENTION_ROLE)])


async def purge(settings: Settings) -> dict:
    """One retention pass; returns the counts (also logged and audited)."""
    from hemovision_database import create_db_engine

    from hemovision_history.server import build_service

    audit_engine = create_db_engine(settings.retention_database_url, pool_size=1) \
        if settings.retention_database_url else None
    service = build_service(settings, audit_retention_engine=audit_engine)
    try:
        report = await service.retention.purge()
    finally:
        service.engine.dispose()
        if audit_engine is not None:
            audit_engine.dispose()
    return report.as_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-history", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "role-passwords", "purge"])
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        from hemovision_grpc_server import run

        from hemovision_history.server import create_server

        run("history", settings, create_server)
        return 0
    configure_logging("history", settings.log_level)
    if args.command == "migrate":
        migrate(settings)
        log.info("migrations applied")
        return 0
    if args.command == "role-passwords":
        roles = set_role_passwords(settings)
        log.info("role passwords set" if roles else "no role password to set", extra={"roles": roles})
        return 0
    if args.command == "purge":
        counts = asyncio.run(purge(settings))
        print(json.dumps({**counts, "retention_days": settings.retention_days,
                          "audit_retention_days": settings.audit_retention_days}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
