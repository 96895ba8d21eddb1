"""Turning a batch upload (many files or one ZIP) into items, safely, and keeping them on disk
under <upload_dir>/<org>/<batch>/ until a worker has recorded them.

ZIP safety: caps on entry count and total uncompressed size reject the archive; per entry,
unsafe names (absolute, `..`, drive letters, backslashes, NUL), symlinks, encrypted or nested
archives, entries over the per-image limit, suspicious compression ratios (zip bombs, also
checked on the bytes actually inflated) and non-images become failed items with a reason.
Entries are never extracted by name: each item is written as <index>.bin into a staging
directory (streamed from the spooled upload, never the whole archive in memory), which
becomes the batch directory once the batch exists, so nothing can land outside it.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import stat
import struct
import uuid
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hemovision_gateway.errors import ApiError
from hemovision_gateway.images import ACCEPTED, sniff_format
from hemovision_gateway.settings import Settings

ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Item:
    index: int
    filename: str
    stored: bool = False  # written as <index>.bin in the staging directory
    error: str | None = None


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _store(staging: Path, index: int, content: bytes) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f".{index:05d}.tmp"
    tmp.write_bytes(content)
    os.replace(tmp, staging / f"{index:05d}.bin")


def _unsafe_name(name: str) -> str | None:
    if not name:  # found by fuzzing (bench/fuzz): ZipInfo.is_dir() raised IndexError on it, a 500
        return "the entry has no name"
    if "\x00" in name:
        return "the entry name contains a NUL byte"
    if "\\" in name:
        return "the entry name contains a backslash (unsafe path)"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "the entry name is an absolute path (unsafe path)"
    if ".." in PurePosixPath(name).parts:
        return "the entry name leaves the archive folder ('..', path traversal)"
    return None


def _check_image(data: bytes, settings: Settings) -> str | None:
    if not data:
        return "the file is empty"
    if len(data) > settings.max_image_bytes:
        return f"the file is over the limit of {settings.max_image_bytes:,} bytes"
    if any(data.startswith(m) for m in ARCHIVE_MAGIC):
        return "nested archives are not accepted"
    if sniff_format(data) is None:
        return f"not a recognised image ({ACCEPTED})"
    return None


def expand_zip(source: BinaryIO, settings: Settings, start: int, staging: Path) -> list[Item]:
    try:
        zf = zipfile.ZipFile(source)
    except NotImplementedError as exc:  # e.g. "zip file version 6.4" in the central directory
        raise ApiError(422, "invalid_archive", f"the ZIP file cannot be read ({exc})") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):
        raise ApiError(422, "invalid_archive", "the ZIP file cannot be read") from None
    with zf:
        # endswith, not ZipInfo.is_dir(): that indexes filename[-1], an IndexError for an entry without a name
        infos = [i for i in zf.infolist()
                 if not i.filename.endswith("/") and not i.filename.startswith("__MACOSX/")
                 and PurePosixPath(i.filename).name not in (".DS_Store", "Thumbs.db")]
        if len(infos) > settings.zip_max_entries:
            raise ApiError(413, "too_many_entries",
                           f"the ZIP has {len(infos):,} entries; the limit is {settings.zip_max_entries:,}")
        declared = sum(i.file_size for i in infos)
        if declared > settings.zip_max_total_uncompressed:
            raise ApiError(413, "archive_too_large",
                           f"the ZIP unpacks to {declared:,} bytes; the limit is "
                           f"{settings.zip_max_total_uncompressed:,}")
        items: list[Item] = []
        inflated_total = 0
        for offset, info in enumerate(infos):
            index = start + offset
            name = info.filename
            display = name[-255:]

            def fail(reason: str) -> None:
                items.append(Item(index=index, filename=display, error=reason))  # noqa: B023

            if (reason := _unsafe_name(name)) is not None:
                fail(reason)
                continue
            mode = info.external_attr >> 16
            if mode and stat.S_ISLNK(mode):
                fail("symbolic links are not accepted")
                continue
            if info.flag_bits & 0x1:
                fail("encrypted entries are not accepted")
                continue
            if name.lower().endswith(ARCHIVE_SUFFIXES):
                fail("nested archives are not accepted")
                continue
            if info.file_size > settings.max_image_bytes:
                fail(f"the file is over the limit of {settings.max_image_bytes:,} bytes")
                continue
            if info.file_size / max(info.compress_size, 1) > settings.zip_max_ratio:
                fail("suspicious compression ratio (possible zip bomb)")
                continue
            try:
                with zf.open(info) as fh:  # bounded read: the header may lie about the size
                    content = fh.read(settings.max_image_bytes + 1)
            # lzma.LZMAError is no OSError: a corrupt LZMA entry (method 14) escaped as a 500 (found by fuzzing)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, zlib.error,
                    lzma.LZMAError) as exc:
                fail(f"the entry cannot be read ({type(exc).__name__})")
                continue
            if len(content) > settings.max_image_bytes:
                fail(f"the file is over the limit of {settings.max_image_bytes:,} bytes")
                continue
            if len(content) / max(info.compress_size, 1) > settings.zip_max_ratio:
                fail("suspicious compression ratio (possible zip bomb)")
                continue
            inflated_total += len(content)
            if inflated_total > settings.zip_max_total_uncompressed:
                fail("the archive unpacks to more than the total limit")
                continue
            if (reason := _check_image(content, settings)) is not None:
                fail(reason)
                continue
            _store(staging, index, content)
            items.append(Item(index=index, filename=display, stored=True))
        return items


def build_items(files: list[tuple[str, BinaryIO]], settings: Settings, staging: Path) -> list[Item]:
    """Uploaded files (name, seekable file) -> items, good ones stored in `staging`; a ZIP is
    expanded in place. Raises ApiError for a request that cannot be a batch at all."""
    items: list[Item] = []
    for name, source in files:
        source.seek(0)
        head = source.read(4)
        source.seek(0)
        if is_zip(head):
            items.extend(expand_zip(source, settings, start=len(items), staging=staging))
        else:
            index = len(items)
            data = source.read(settings.max_image_bytes + 1)
            reason = _check_image(data, settings)
            if reason is None:
                _store(staging, index, data)
            items.append(Item(index=index, filename=(name or f"file-{index}")[-255:], stored=reason is None,
                              error=reason))
        if len(items) > settings.max_batch_items:
            raise ApiError(413, "too_many_items", f"more than {settings.max_batch_items:,} items; "
                                                  f"a batch holds at most {settings.max_batch_items:,}")
    if not items:
        raise ApiError(422, "empty_batch", "the upload contains no files")
    return items


def owner_dir(organization_id: str, user_id: str) -> str:
    owner = organization_id or f"user-{user_id}"
    if not _SAFE_ID.match(owner):
        raise ApiError(422, "invalid_owner", "unexpected organization id")
    return owner


def batch_dir(settings: Settings, owner: str, batch_id: str) -> Path:
    if not _SAFE_ID.match(batch_id):
        raise ValueError(f"unexpected batch id {batch_id!r}")
    root = Path(settings.upload_dir).resolve()
    path = (root / owner / batch_id).resolve()
    if root not in path.parents:
        raise ValueError("batch directory escapes the upload root")
    return path


def staging_dir(settings: Settings, owner: str) -> Path:
    root = Path(settings.upload_dir).resolve()
    return root / owner / f".staging-{uuid.uuid4().hex}"


def finalize(staging: Path, directory: Path, items: list[Item]) -> None:
    """Moves the staged items into the batch directory and writes a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    if staging.exists():
        for path in staging.glob("*.bin"):
            os.replace(path, directory / path.name)
        shutil.rmtree(staging, ignore_errors=True)
    manifest = [asdict(i) for i in items]
    (directory / "manifest.json").write_text(json.dumps(manifest))


def item_path(directory: Path, index: int) -> Path:
    return directory / f"{int(index):05d}.bin"


def remove_if_done(directory: Path) -> None:
    """Removes the batch directory once no item file is left in it."""
    try:
        if directory.exists() and not any(directory.glob("*.bin")):
            shutil.rmtree(directory, ignore_errors=True)
    except OSError:
        pass
