"""Coverage-guided fuzzing (atheris + libFuzzer) of what reads untrusted bytes: one target per process.

    python bench/fuzz/fuzz_decoders.py pixels CORPUS_DIR SEED_DIR -max_total_time=120   # libFuzzer flags
    python bench/fuzz/fuzz_decoders.py pixels --write-seeds SEED_DIR CORPUS_DIR SEED_DIR ...  # seeds first
    python bench/fuzz/fuzz_decoders.py --seeds pixels DIR      # write the seed corpus (generated, never stored)
    python bench/fuzz/fuzz_decoders.py --replay pixels FILE... # run the contract on files (a finding), no fuzzing

`make fuzz` (bench/fuzz/run_fuzz.py) runs every target for a fixed budget; test_fuzz_harness.py in
services/preprocess/core/tests and services/gateway/tests (beside the hypothesis tests) run it for a few
thousand executions in CI so it cannot rot. Here, not under tests/: it is a bench-like tool (`make fuzz`,
its own process per target, libFuzzer exits the process), like bench/reliability's harness.

Targets and their contract (docs/reliability.md "Fuzzing"):

- pixels: hemovision_pixels.decode_image (Pillow's JPEG/PNG/BMP/TIFF/WebP openers, DICOM through
  pydicom) returns an HxWx3 uint8 C-contiguous array or raises ImageRejected with a reason from
  REJECTION_REASONS; a decoded image then goes through the C++ chain (_core: preprocess_with_info) under
  three specs (the served model's v1, a v2 with locate + white balance, a v1 with Reinhard + CLAHE + blur),
  which must give a finite float32 [S, S, 3] tensor and never raise. With HV_SANITIZE_STAGE set (run_fuzz.py
  --asan) the chain is the ASan + UBSan build of _core.
- zip: the gateway's batch reader (batches.storage.build_items) answers an ApiError 413/422 or items, each
  stored or failed with a reason; only <index>.bin files of stored items land in the staging folder.
- sniff: hemovision_contracts.image_formats.sniff_format / foreign_format and the gateway's edge check
  (images.check_image_bytes): a known name or None, a 413/415/422 ApiError, decided by the first 132 bytes.

Anything else is a finding: another exception (atheris reports it and saves the input), a crash or a
sanitizer report, a hang (libFuzzer -timeout) or a memory blow-up (-rss_limit_mb). Coverage feedback comes
from the Python code, instrumented at import (atheris.instrument_imports): our decoders, Pillow's and
pydicom's parsers, zipfile. The C code below them (libjpeg, zlib, the C++ chain) runs uninstrumented for
coverage (no clang here); the ASan build catches memory errors in the C++ chain all the same.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import atheris

TARGETS = ("pixels", "zip", "sniff")
# HV_FUZZ_INSTRUMENT=ours instruments only hemovision_* (the CI smoke run: instrumenting Pillow and
# pydicom takes ~15 s at start-up); the default, "all", adds the third-party parsers below our decoders.
INSTRUMENT_ALL = os.environ.get("HV_FUZZ_INSTRUMENT", "all") != "ours"
# pydicom's data dictionaries are big tables, not parsing code: instrumenting them only costs start-up.
EXCLUDE = ["pydicom._dicom_dict", "pydicom._private_dict", "pydicom._uid_dict"]


def _all_but(package: str, *keep: str) -> list[str]:
    """Every module of `package` but `keep` (found on disk, nothing imported): instrument_imports takes whole
    top-level packages, and importing the batch reader pulls in the gateway's routes and schemas."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    names = []
    for where in (spec.submodule_search_locations or []) if spec else []:
        for path in Path(where).rglob("*.py"):
            parts = path.relative_to(where).with_suffix("").parts
            names.append(".".join([package, *parts[:-1]] if parts[-1] == "__init__" else [package, *parts]))
    return [n for n in names if n not in keep]


def _include(*third_party: str) -> list[str]:
    ours = ["hemovision_pixels", "hemovision_contracts", "hemovision_gateway"]
    return ours + list(third_party) if INSTRUMENT_ALL else ours

# ---------------------------------------------------------------------------------------------
# imports, instrumented


def _stage_pixels() -> None:
    """Import hemovision_pixels from a plain folder on sys.path: the ASan/UBSan stage (HV_SANITIZE_STAGE, made
    by run_fuzz.py --asan in services/preprocess/core/scripts/sanitize.sh's layout), else links to the sources
    and the installed _core. Either way the editable install's import hook goes: its loader wrapper hands
    atheris' instrumenting loader the uninstrumented code (no coverage from our decoder at all)."""
    stage = os.environ.get("HV_SANITIZE_STAGE")
    finders = [f for f in sys.meta_path if "editable" in type(f).__module__.lower()
               or "skbuild" in type(f).__module__.lower()]
    if not stage and not finders:
        return  # a regular install: nothing to route around
    if not stage:
        import sysconfig

        src = Path(__file__).resolve().parents[2] / "services/preprocess/core/src/hemovision_pixels"
        built = sorted(Path(sysconfig.get_paths()["platlib"], "hemovision_pixels").glob("_core*.so"))
        if not built or not src.is_dir():
            return
        # libFuzzer ends the process with exit(), so nothing cleans up after us: old stages go here
        for old in Path(tempfile.gettempdir()).glob("hv-fuzz-pixels-*"):
            if time.time() - old.stat().st_mtime > 86_400:
                shutil.rmtree(old, ignore_errors=True)
        stage = tempfile.mkdtemp(prefix="hv-fuzz-pixels-")
        pkg = Path(stage, "hemovision_pixels")
        pkg.mkdir()
        for f in [*src.iterdir(), built[0]]:
            if f.is_file():
                (pkg / f.name).symlink_to(f)
    sys.meta_path[:] = [f for f in sys.meta_path if f not in finders]
    sys.path.insert(0, stage)


def _import_pixels() -> None:
    _stage_pixels()
    with atheris.instrument_imports(include=_include("PIL", "pydicom"), exclude=EXCLUDE):
        import hemovision_pixels
        from PIL import Image

        Image.init()  # every plugin now, inside the hook (Pillow imports them lazily)
        import pydicom.pixels  # noqa: F401
        # The pixel decoding machinery is imported lazily too: decode one file of each kind in here.
        from hemovision_pixels import decode_image

        for seed in _pixel_seeds():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    decode_image(seed)
            except Exception:
                pass
    from hemovision_pixels import _core

    stage = os.environ.get("HV_SANITIZE_STAGE")
    assert not stage or _core.__file__.startswith(stage), _core.__file__
    print(f"INFO: hemovision_pixels from {Path(hemovision_pixels.__file__).parent}, _core "
          f"{Path(_core.__file__).resolve()}{' (ASan + UBSan)' if stage else ''}", file=sys.stderr, flush=True)


def _import_zip() -> None:
    with atheris.instrument_imports(
        include=_include("zipfile"),
        exclude=_all_but("hemovision_gateway", "hemovision_gateway.batches.storage", "hemovision_gateway.images")
        + _all_but("hemovision_contracts", "hemovision_contracts.image_formats"),
    ):
        import zipfile  # noqa: F401

        from hemovision_gateway.batches import storage  # noqa: F401


def _import_sniff() -> None:
    with atheris.instrument_imports(
        include=_include(), exclude=_all_but("hemovision_gateway", "hemovision_gateway.images")
        + _all_but("hemovision_contracts", "hemovision_contracts.image_formats"),
    ):
        from hemovision_contracts import image_formats  # noqa: F401
        from hemovision_gateway import images  # noqa: F401


# ---------------------------------------------------------------------------------------------
# seeds: hemovision_testkit.hostile plus small valid files, built in code


@functools.cache
def _pixel_seeds() -> list[bytes]:
    import numpy as np
    from PIL import Image

    from hemovision_testkit.hostile import _cell, dicom_file, encode, image_corpus, raw_png

    seeds = [c.data for c in image_corpus() if len(c.data) <= 65_536]
    cell = _cell(24, 20)
    for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP"):
        seeds.append(encode(cell, fmt))
    # modes the decoder converts: grey, grey+alpha, RGBA, palette (with transparency), 16-bit, CMYK, 1-bit
    seeds += [
        encode(cell.convert("L"), "PNG"),
        encode(cell.convert("LA"), "PNG"),
        encode(cell.convert("RGBA"), "PNG"),
        encode(cell.convert("P"), "PNG", transparency=0),
        encode(Image.fromarray((np.arange(20 * 24, dtype=np.uint16) * 137).reshape(24, 20)), "PNG"),
        encode(Image.fromarray((np.arange(20 * 24, dtype=np.uint16) * 137).reshape(24, 20)), "TIFF"),
        encode(cell.convert("CMYK"), "JPEG"),
        encode(cell.convert("CMYK"), "TIFF"),
        encode(cell.convert("1"), "TIFF"),
        encode(cell.convert("L"), "JPEG", progressive=True),
        encode(cell, "TIFF", compression="tiff_deflate"),
        encode(cell, "TIFF", compression="packbits"),
        encode(cell.convert("RGBA"), "WEBP", lossless=True),
        encode(cell.convert("P"), "BMP"),
    ]
    # shapes the C++ chain finds awkward: one pixel, one row, one column, a sliver
    for h, w in ((1, 1), (1, 97), (97, 1), (2, 3), (3, 300)):
        seeds.append(encode(_cell(h, w), "PNG"))
    seeds.append(raw_png(2, 2, 16, 6, __import__("zlib").compress(b"\x00" + b"\xff" * 16 + b"\x00" + b"\x10" * 16)))
    seeds += [
        dicom_file(rows=8, cols=8),
        dicom_file(rows=8, cols=8, samples=1, photometric="MONOCHROME2"),
        dicom_file(rows=8, cols=8, samples=1, photometric="MONOCHROME1"),
        dicom_file(rows=8, cols=8, transfer_syntax="1.2.840.10008.1.2"),
        dicom_file(rows=8, cols=8, samples=3, photometric="YBR_FULL"),
    ]
    return seeds


def _zip_seeds() -> list[bytes]:
    import zipfile

    from hemovision_testkit.hostile import _cell, encode, tiny_zip, zip_corpus

    png = encode(_cell(8, 8), "PNG")
    seeds = [c.data for c in zip_corpus() if len(c.data) <= 65_536]
    seeds += [
        tiny_zip({"a.png": png, "b/c.png": png, "dir/": b""}),
        tiny_zip({"a.png": png}, compression=zipfile.ZIP_STORED),
        tiny_zip({"a.png": png}, compression=zipfile.ZIP_BZIP2),
        tiny_zip({"a.png": png}, compression=zipfile.ZIP_LZMA),
        tiny_zip({"__MACOSX/a.png": png, ".DS_Store": b"x", "x.zip": tiny_zip({"y.png": png})}),
        tiny_zip({"cell.jpg": encode(_cell(8, 8), "JPEG"), "cell.bmp": encode(_cell(4, 4), "BMP")}),
        png,  # not a ZIP: the batch reader's single-file path
    ]
    return seeds


def _sniff_seeds() -> list[bytes]:
    from hemovision_testkit.hostile import _cell, dicom_file, encode

    cell = _cell(4, 4)
    return [encode(cell, f) for f in ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")] + [
        dicom_file(rows=2, cols=2)[:200], b"MM\x00*\x00\x00\x00\x08", b"%PDF-1.7\n", b"PK\x03\x04",
        b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"",
    ]


SEEDS: dict[str, Callable[[], list[bytes]]] = {"pixels": _pixel_seeds, "zip": _zip_seeds, "sniff": _sniff_seeds}


def write_seeds(target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for i, data in enumerate(seeds):
        (directory / f"seed-{i:03d}").write_bytes(data)
    return len(seeds)


# ---------------------------------------------------------------------------------------------
# the contracts


class Finding(AssertionError):
    """The target broke its contract (atheris prints the traceback and saves the input)."""


def _pixels_target() -> Callable[[bytes], None]:
    import numpy as np

    from hemovision_contracts.image_formats import REJECTION_REASONS
    from hemovision_pixels import (
        ClaheSpec,
        ImageRejected,
        LocateSpec,
        PreprocessSpec,
        ReinhardStain,
        decode_image,
        preprocess_with_info,
    )

    base = {"version": 1, "input_size": 64, "crop": "center_square", "stain_normalization": None, "clahe": None,
            "blur_sigma": 0.0, "mean": [0.873047, 0.748258, 0.721347], "std": [0.156804, 0.180858, 0.082275]}
    specs = [
        PreprocessSpec.from_dict(base),  # the served model's (models/hemovision/1/assets.extra/hemovision.json)
        PreprocessSpec.from_dict({**base, "version": 2, "locate": LocateSpec().to_dict(),
                                  "white_balance": {"target": [254.0, 228.0, 203.0]}}),
        PreprocessSpec.from_dict({**base, "input_size": 32, "crop": "pad_square",
                                  "stain_normalization": ReinhardStain((72.0, 12.0, -8.0), (14.0, 9.0, 7.0)).to_dict(),
                                  "clahe": ClaheSpec().to_dict(), "blur_sigma": 0.8}),
    ]

    def one(data: bytes) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow/pydicom warn on corrupt metadata; only the outcome counts
                image = decode_image(data)
        except ImageRejected as exc:
            if exc.reason not in REJECTION_REASONS or not exc.message:
                raise Finding(f"undocumented rejection reason {exc.reason!r}: {exc.message!r}") from None
            return
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and image.size > 0 and image.flags.c_contiguous):
            raise Finding(f"decode_image returned {type(image).__name__} {getattr(image, 'shape', None)} "
                          f"{getattr(image, 'dtype', None)}")
        for spec in specs:
            tensor, _info = preprocess_with_info(image, spec)
            s = spec.input_size
            if tensor.shape != (s, s, 3) or tensor.dtype != np.float32 or not np.isfinite(tensor).all():
                raise Finding(f"the C++ chain gave {tensor.shape} {tensor.dtype} (finite: "
                              f"{bool(np.isfinite(tensor).all())}) for a {image.shape} image")

    return one


def _zip_target() -> Callable[[bytes], None]:
    from hemovision_gateway.batches import storage
    from hemovision_gateway.errors import ApiError
    from hemovision_gateway.settings import Settings

    settings = Settings(batch_inline=True)
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="hv-fuzz-zip-", dir=shm if shm.is_dir() else None))
    staging = root / "staging"

    def one(data: bytes) -> None:
        try:
            items = storage.build_items([("upload.zip", io.BytesIO(data))], settings, staging)
        except ApiError as exc:
            if exc.status not in (413, 422) or not exc.code or not exc.message:
                raise Finding(f"unexpected ApiError {exc.status} {exc.code}: {exc.message}") from None
            items = []
        try:
            if [i.index for i in items] != list(range(len(items))):
                raise Finding(f"item indexes {[i.index for i in items]}")
            for item in items:
                if item.stored == bool(item.error):
                    raise Finding(f"an item both/neither stored and failed: {item}")
            stored = {f"{i.index:05d}.bin" for i in items if i.stored}
            written = {p.name for p in staging.iterdir()} if staging.exists() else set()
            if written != stored:
                raise Finding(f"staging holds {sorted(written)}, stored items are {sorted(stored)}")
            for name in stored:
                if (staging / name).stat().st_size > settings.max_image_bytes:
                    raise Finding(f"{name} is over the per-image limit")
            outside = {p.name for p in root.iterdir()} - {"staging"}
            if outside:
                raise Finding(f"written outside the staging folder: {sorted(outside)}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return one


def _sniff_target() -> Callable[[bytes], None]:
    from hemovision_contracts.image_formats import foreign_format, sniff_format
    from hemovision_gateway.errors import ApiError
    from hemovision_gateway.images import check_image_bytes

    formats = {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "DICOM"}
    foreign = {"GIF", "PDF", "ZIP", "JPEG 2000"}
    codes = {422: {"empty"}, 413: {"too_large"}, 415: {"unsupported_type", "not_an_image"}}

    def one(data: bytes) -> None:
        fmt, other = sniff_format(data), foreign_format(data)
        if fmt is not None and fmt not in formats:
            raise Finding(f"sniff_format gave {fmt!r}")
        if other is not None and other not in foreign:
            raise Finding(f"foreign_format gave {other!r}")
        head = data[:132]  # every magic lies in the first 132 bytes (DICM at 128): a head read is enough
        if sniff_format(head) != fmt or foreign_format(head) != other:
            raise Finding("the verdict depends on bytes after the first 132")
        try:
            got = check_image_bytes(data, max_bytes=4096)
        except ApiError as exc:
            if exc.code not in codes.get(exc.status, ()):
                raise Finding(f"check_image_bytes: {exc.status} {exc.code}") from None
            if fmt is not None and exc.status == 415:
                raise Finding(f"a {fmt} refused as {exc.code}")
            return
        if got != fmt or fmt is None:
            raise Finding(f"check_image_bytes accepted {got!r}, sniff_format says {fmt!r}")

    return one


IMPORTS = {"pixels": _import_pixels, "zip": _import_zip, "sniff": _import_sniff}
BUILD = {"pixels": _pixels_target, "zip": _zip_target, "sniff": _sniff_target}


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--seeds":
        print(write_seeds(argv[2], Path(argv[3])))
        return
    if len(argv) > 2 and argv[1] == "--replay":
        IMPORTS[argv[2]]()
        one = BUILD[argv[2]]()
        for name in argv[3:]:
            one(Path(name).read_bytes())
            print(f"{name}: within the contract")
        return
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [CORPUS_DIR...] [libFuzzer flags]")
    target, rest = argv[1], argv[2:]
    IMPORTS[target]()
    if rest[:1] == ["--write-seeds"]:  # in this process: the seeds are built already (the warm-up)
        write_seeds(target, Path(rest[1]))
        rest = rest[2:]
    one = BUILD[target]()
    # libFuzzer sees the program name and its own flags/dirs, not the target's name. internal_libfuzzer:
    # under ASan (run_fuzz.py --asan) atheris' own libFuzzer is LD_PRELOADed ahead of libasan, so that its
    # coverage hooks win over libasan's stubs; this makes atheris use that very copy, not a second one.
    atheris.Setup([argv[0], *rest], one, internal_libfuzzer=True)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
