"""`hemovision predict FILE|DIR|ZIP...`: classify image files through the REST API, as a lab
would from a folder of exported cells, with a progress bar and table / JSON / CSV output.

Each image is one POST /api/v1/predictions (recorded in the caller's history like an upload in
the browser); a few go at once (--concurrency). A file the server refuses is a row with its error,
and the exit status is 1 when any row failed. Directories are searched recursively for image
files; ZIP entries are read one at a time, never unpacked to disk.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm"})
# The gateway's upload limit; larger entries are reported, not sent.
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES = 10_000
COLUMNS = ("file", "label", "confidence", "needs_review", "review_reasons", "id", "error")


class InputError(Exception):
    """A path that cannot be read as images (missing, empty folder, broken ZIP, too many files)."""


@dataclass(frozen=True)
class Source:
    name: str  # as shown in the output: the path, or "archive.zip:inner/path.png"
    read: Callable[[], bytes]


def _zip_sources(path: Path) -> Iterator[Source]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable ZIP ({exc})") from None
    with archive:
        infos = [i for i in archive.infolist()
                 if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                 and not Path(i.filename).name.startswith(".") and "__MACOSX" not in i.filename]

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            if info.file_size > MAX_FILE_BYTES:
                raise InputError(f"{info.file_size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
            with zipfile.ZipFile(path) as z, z.open(info) as fh:
                data = fh.read(MAX_FILE_BYTES + 1)  # a lying header cannot make us read more
            if len(data) > MAX_FILE_BYTES:
                raise InputError(f"more than {MAX_FILE_BYTES:,} bytes once unpacked")
            return data
        return read

    for info in infos:
        yield Source(f"{path}:{info.filename}", reader(info))


def _file_source(path: Path) -> Source:
    def read() -> bytes:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
        return path.read_bytes()
    return Source(str(path), read)


def collect(paths: list[str]) -> list[Source]:
    """Every image named by `paths`: files as given (the server judges their content), image
    files found under directories, image entries of ZIP archives; in a stable order."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            sources += [_file_source(p) for p in found]
        elif path.is_file() and path.suffix.lower() == ".zip":
            found_in_zip = list(_zip_sources(path))
            if not found_in_zip:
                raise InputError(f"{path}: the archive holds no image files")
            sources += found_in_zip
        elif path.is_file():
            sources.append(_file_source(path))
        else:
            raise InputError(f"{path}: no such file or directory")
        if len(sources) > MAX_FILES:
            raise InputError(f"more than {MAX_FILES:,} images in one run; split them, or use a batch upload")
    return sources


def _classify(client: httpx.Client, headers: dict[str, str], source: Source, extra: dict[str, str]) -> dict:
    row = {"file": source.name, "label": "", "confidence": None, "needs_review": None, "review_reasons": [],
           "id": "", "error": ""}
    try:
        data = source.read()
        r = client.post("/api/v1/predictions", headers=headers, data=extra,
                        files={"file": (Path(source.name.rsplit(":", 1)[-1]).name, data)})
    except (InputError, OSError) as exc:
        row["error"] = str(exc)
        return row
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            row["error"] = f"{r.status_code} {err['code']}: {err['message']}"
        except (ValueError, KeyError):
            row["error"] = f"{r.status_code}: {r.text[:200]}"
        return row
    body = r.json()
    row.update(label=body["label"], confidence=body["confidence"], needs_review=body["needs_review"],
               review_reasons=body.get("review_reasons", []), id=body["id"])
    return row


class Progress:
    """A one-line bar on stderr, redrawn in place when stderr is a terminal, else silent."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.live:
            width = 30
            filled = width * self.done // max(1, self.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                              + (f", {self.failed} failed" if self.failed else ""))
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def run(client: httpx.Client, headers: dict[str, str], sources: list[Source], *, concurrency: int,
        extra: dict[str, str], progress: Progress) -> list[dict]:
    """Classifies every source, `concurrency` at a time; rows in the sources' order."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(_classify, client, headers, s, extra) for s in sources]
        rows = []
        for future in futures:
            row = future.result()
            progress.step(bool(row["error"]))
            rows.append(row)
    return rows


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    cells = [[_cell(row[c]) for c in COLUMNS] for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([_csv_safe(v) for v in line] for line in cells)
        return out.getvalue().rstrip("\n")
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _csv_safe(value: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas (file names are user input)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
