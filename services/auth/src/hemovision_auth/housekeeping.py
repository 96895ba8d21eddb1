"""Housekeeping of the auth server, a background task (hourly): deletes forwarded audit outbox rows
older than HV_AUTH_AUDIT_RETENTION_S, and sign-in failure counters that no longer matter (not
locked, last failure longer ago than HV_AUTH_LOCKOUT_MEMORY_S), which unknown addresses would
otherwise pile up."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from hemovision_auth import repository
from hemovision_auth.settings import Settings

log = logging.getLogger(__name__)


def prune_sync(engine: Engine, settings: Settings, *, now: datetime | None = None) -> tuple[int, int]:
    """(audit rows deleted, failure counters deleted)."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        events = repository.delete_forwarded_audit_events(
            conn, before=now - timedelta(seconds=settings.audit_retention_s)
        )
        counters = repository.delete_stale_login_attempts(
            conn, now=now, failed_before=now - timedelta(seconds=settings.lockout_memory_s)
        )
    return events, counters


async def run_housekeeping(engine: Engine, settings: Settings, *, interval_s: float = 3600.0) -> None:
    while True:
        try:
            events, counters = await asyncio.to_thread(prune_sync, engine, settings)
            if events or counters:
                log.info("housekeeping", extra={"audit_rows_deleted": events, "login_counters_deleted": counters})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - e.g. the database restarting: next round
            log.exception("housekeeping failed")
        await asyncio.sleep(interval_s)
