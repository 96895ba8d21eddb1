"""Retention: each organization's policy (blobs, whole records) and the `purge` pass that applies
it, plus the audit log's own retention.

The purge runs as its own process (`python -m hemovision_history purge`: Celery beat in the
development stack, a Kubernetes CronJob in clusters), never inside the server, because deleting
audit events needs the audit retention database role, which the serving process must not hold."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from hemovision_contracts import ORG_ADMIN
from hemovision_history import domain
from hemovision_history.blobstore import BlobStore, delete_blobs
from hemovision_history.errors import RoleRequired
from hemovision_history.repository import AuditRepository, RetentionRepository
from hemovision_history.repository.audit import delete_audit_events_before
from hemovision_history.service.validation import check, organization_of

log = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 36_500
SOURCE_RETENTION = "retention"


def _days(value: int | None, field: str, minimum: int) -> int | None:
    if value is None:
        return None
    check(minimum <= value <= MAX_RETENTION_DAYS, f"{field} must be between {minimum} and {MAX_RETENTION_DAYS} (or null)")
    return value


class RetentionService:
    def __init__(
        self,
        repository: RetentionRepository,
        audit: AuditRepository,
        blobs: BlobStore,
        policy: domain.StoragePolicy,
        *,
        audit_engine: Engine | None = None,
    ) -> None:
        self.repo = repository
        self.audit = audit
        self.blobs = blobs
        self.policy = policy
        # The connection audit events are deleted through (SET LOCAL ROLE to the retention role).
        self.audit_engine = audit_engine or repository.engine

    # ---- the organization's policy ---------------------------------------------------

    def _policy_from(self, organization_id: str, row) -> domain.RetentionPolicy:  # noqa: ANN001
        return domain.RetentionPolicy(
            organization_id=organization_id,
            blob_days=row.blob_days if row else None,
            record_days=row.record_days if row else None,
            default_blob_days=self.policy.retention_days,
            audit_retention_days=self.policy.audit_retention_days,
            updated_by=row.updated_by if row else "",
            updated_at=row.updated_at if row else None,
        )

    @staticmethod
    def _org_admin_org(caller: domain.Caller) -> str:
        if caller.role != ORG_ADMIN:
            raise RoleRequired((ORG_ADMIN,))
        return organization_of(caller)

    async def get_policy(self, caller: domain.Caller) -> domain.RetentionPolicy:
        """org_admin: its own organization's policy (the platform default where none is set)."""
        org = self._org_admin_org(caller)
        row = await asyncio.to_thread(self.repo.get_policy, organization_id=org)
        return self._policy_from(org, row)

    async def set_policy(
        self, caller: domain.Caller, *, blob_days: int | None, record_days: int | None,
    ) -> domain.RetentionPolicy:
        """org_admin: sets its organization's policy (audited as `retention.update`). blob_days
        None = the platform default, 0 = keep forever; record_days None = keep records."""
        org = self._org_admin_org(caller)
        row = await asyncio.to_thread(
            self.repo.put_policy,
            organization_id=org,
            blob_days=_days(blob_days, "blob_days", 0),
            record_days=_days(record_days, "record_days", 1),
            updated_by=caller.user_id,
            client_ip=caller.client_ip,
        )
        return self._policy_from(org, row)

    # ---- the purge -------------------------------------------------------------------

    async def purge(self, *, now: datetime | None = None, batch_size: int = 500) -> domain.PurgeReport:
        """One pass: whole records of organizations whose policy sets record_days, then stored
        blobs older than each organization's blob retention, then audit events older than the
        audit retention (as the retention role). Each organization that lost something gets a
        `retention.purge` audit event with the counts; the audit purge a platform `audit.purge`."""
        now = now or datetime.now(UTC)
        report = domain.PurgeReport()

        def counts(org: str) -> domain.OrganizationPurge:
            return report.organizations.setdefault(org, domain.OrganizationPurge())

        for org, days in await asyncio.to_thread(self.repo.record_policies):
            cutoff = now - timedelta(days=days)
            while True:
                gone = await asyncio.to_thread(
                    self.repo.delete_expired_records, organization_id=org, older_than=cutoff, limit=batch_size)
                for _id, image_key, heatmap_key in gone:
                    await asyncio.to_thread(delete_blobs, self.blobs, [image_key, heatmap_key])
                if gone:
                    counts(org).records += len(gone)
                if len(gone) < batch_size:
                    break
            batches = await asyncio.to_thread(self.repo.delete_expired_batches, organization_id=org, older_than=cutoff)
            if batches:
                counts(org).batches += batches

        while True:
            claimed = await asyncio.to_thread(
                self.repo.claim_expired_blobs, now=now, default_days=self.policy.retention_days, limit=batch_size)
            for org, _id, image_key, heatmap_key in claimed:
                await asyncio.to_thread(delete_blobs, self.blobs, [image_key, heatmap_key])
                counts(org).blobs += 1
            if len(claimed) < batch_size:
                break

        audit_cutoff = None
        if self.policy.audit_retention_days > 0:
            audit_cutoff = now - timedelta(days=self.policy.audit_retention_days)
            while True:
                gone_events = await asyncio.to_thread(
                    delete_audit_events_before, self.audit_engine, older_than=audit_cutoff, limit=5000)
                report.audit_events += gone_events
                if gone_events < 5000:
                    break

        for org, c in sorted(report.organizations.items()):
            details = {"blobs": c.blobs, "records": c.records, "batches": c.batches}
            await asyncio.to_thread(
                self.audit.record_audit_event, organization_id=org, user_id="", action="retention.purge",
                target_type="organization", target_id=org, details=details, source=SOURCE_RETENTION)
            log.info("retention purge", extra={"organization_id": org, **details})
        if report.audit_events:
            details = {"audit_events": report.audit_events, "older_than": audit_cutoff.isoformat() if audit_cutoff else None,
                       "audit_retention_days": self.policy.audit_retention_days}
            await asyncio.to_thread(
                self.audit.record_audit_event, organization_id="", user_id="", action="audit.purge",
                target_type="audit_log", target_id="", details=details, source=SOURCE_RETENTION)
            log.info("audit log purge", extra=details)
        return report
