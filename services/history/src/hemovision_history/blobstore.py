"""The blob store: stored cell images and heatmaps, keyed by organization.

One small interface with two implementations: a local directory (the default) and
any S3-compatible object store (clusters). Keys look like
`<organization_id>/predictions/<shard>/<prediction_id>.image.png` (shard = the id's first two
hex digits); every key starts with the owning organization's id, so one organization's blobs
can be listed, moved or removed as a unit. Rows keep the key they were stored under, so blobs
written under the older `<organization_id>/predictions/<prediction_id>/image.png` layout stay
readable and deletable.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BlobMissing(KeyError):
    """The key does not exist in the store."""


def validate_key(key: str) -> str:
    """Returns the key when every '/'-separated segment is a safe name (no traversal)."""
    parts = key.split("/")
    if len(parts) < 2 or any(not _SEGMENT.match(p) or p in {".", ".."} or ".." in p for p in parts):
        raise ValueError(f"invalid blob key {key!r}")
    return key


def blob_key(organization_id: str, prediction_id: str, kind: str) -> str:
    """The key of a prediction's stored binary; `kind` is "image" or "heatmap".

    Predictions share 256 shard directories per organization instead of one directory each: on
    a local disk a directory per prediction meant a third inode (and an mkdir) per upload, and
    on ext4 inode allocation is the costliest part of storing a blob, above all while a new store
    holds its first few thousand files (the churn test's figures: docs/history.md, docs/serving.md
    "Benchmarks")."""
    return validate_key(f"{organization_id}/predictions/{prediction_id[:2]}/{prediction_id}.{kind}.png")


class BlobStore(Protocol):
    """put/get/delete of whole objects. Implementations are blocking (call them in a thread)."""

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None: ...

    def put_many(self, items: list[tuple[str, bytes]], *, content_type: str = "application/octet-stream") -> None:
        """put() of several objects; on error some may be stored (the caller deletes them)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under `key`; raises BlobMissing."""
        ...

    def delete(self, key: str) -> None:
        """Removes `key`; a missing key is not an error."""
        ...


def delete_blobs(store: BlobStore, keys: Iterable[str | None]) -> None:
    """Deletes the given keys (None skipped). Called once the row is gone or never written: a
    blob that cannot be deleted is an orphan, logged rather than failing the request."""
    for key in keys:
        if key:
            try:
                store.delete(key)
            except Exception:  # noqa: BLE001
                log.exception("could not delete blob %s", key)


def _temp_file_beside(path: Path) -> tuple[int, str]:
    """A new temp file in `path`'s directory, creating the directory. A delete() elsewhere in the
    same shard may remove the directory between our mkdir and the create (it drops directories it
    leaves empty): then it is made again. Once the temp file exists the directory is not empty, so
    it stays until the rename."""
    retries = 2
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        except FileNotFoundError:
            if not retries:
                raise
            retries -= 1


class LocalBlobStore:
    """Blobs as files under `root`. Writes are atomic (temp file in the same directory + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"invalid blob key {key!r}")
        return path

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        fd, tmp = _temp_file_beside(path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_many(self, items: list[tuple[str, bytes]], *, content_type: str = "application/octet-stream") -> None:
        """Every file written first, then every fsync, then every rename: the first fsync's journal
        commit carries the others' data, so N files cost about one flush instead of N."""
        staged: list[tuple[int, str, Path]] = []
        try:
            for key, data in items:
                path = self._path(key)
                fd, tmp = _temp_file_beside(path)
                staged.append((fd, tmp, path))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            for fd, _, _ in staged:
                os.fsync(fd)
            for _, tmp, path in staged:
                os.replace(tmp, path)
        except BaseException:
            for _, tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            for fd, _, _ in staged:
                os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop a directory left empty (a shard, or a per-prediction one of the older layout).
        try:
            path.parent.rmdir()
        except OSError:
            pass

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3BlobStore:
    """Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW ...) through boto3.

    Needs the `s3` extra (`pip install hemovision-history[s3]`). Credentials come from
    boto3's usual chain (environment, shared config, instance role).
    """

    def __init__(self, *, bucket: str, endpoint_url: str = "", region: str = "", prefix: str = "") -> None:
        import boto3  # optional dependency, imported only when this store is configured

        if not bucket:
            raise ValueError("HV_HISTORY_S3_BUCKET is required for the s3 blob backend")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self._missing = (self._client.exceptions.NoSuchKey,)

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        # A PUT is atomic in S3: readers see the old object or the whole new one.
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def put_many(self, items: list[tuple[str, bytes]], *, content_type: str = "application/octet-stream") -> None:
        for key, data in items:
            self.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._missing as exc:
            raise BlobMissing(key) from exc
        return reply["Body"].read()

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))


def blob_store_from_settings(settings) -> BlobStore:  # noqa: ANN001 - Settings, avoids an import cycle
    if settings.blob_backend == "s3":
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
        )
    return LocalBlobStore(settings.blob_root)
