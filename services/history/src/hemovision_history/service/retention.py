"""Retention: stored images and heatmaps older than the policy allows are deleted (`purge`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hemovision_history import domain
from hemovision_history.blobstore import BlobStore, delete_blobs
from hemovision_history.repository import PredictionRepository


class RetentionService:
    def __init__(self, repository: PredictionRepository, blobs: BlobStore, policy: domain.StoragePolicy) -> None:
        self.repo = repository
        self.blobs = blobs
        self.policy = policy

    async def purge_expired(self, *, now: datetime | None = None, batch_size: int = 500) -> int:
        """Deletes stored images and heatmaps older than the retention period (all
        organizations); the prediction records stay. Returns how many predictions lost
        their blobs. A no-op when retention_days is 0."""
        if self.policy.retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.policy.retention_days)
        purged = 0
        while True:
            claimed = await asyncio.to_thread(self.repo.claim_expired_blobs, older_than=cutoff, limit=batch_size)
            for _id, image_key, heatmap_key in claimed:
                await asyncio.to_thread(delete_blobs, self.blobs, [image_key, heatmap_key])
            purged += len(claimed)
            if len(claimed) < batch_size:
                return purged
