"""`python -m hemovision_history [serve|migrate|purge]` (console script hemovision-history).

serve    run the gRPC server (HV_HISTORY_PORT, default 50054) until SIGTERM
migrate  run the Alembic migrations of schema `history` (a one-off step, never at start-up)
purge    delete stored images and heatmaps older than HV_HISTORY_RETENTION_DAYS (0 = keep
         forever); meant for a scheduler (Celery beat, cron, a Kubernetes CronJob)
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

    ensure_database(settings.database_url)
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=settings.database_url, schema="history")


async def purge(settings: Settings) -> int:
    """One retention pass; returns the number of predictions whose blobs were deleted."""
    from hemovision_history.server import build_service

    service = build_service(settings)
    try:
        return await service.retention.purge_expired()
    finally:
        service.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemovision-history", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "purge"])
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
    if args.command == "purge":
        purged = asyncio.run(purge(settings))
        print(json.dumps({"purged_predictions": purged, "retention_days": settings.retention_days}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
