"""Hostile uploads, built by code (no binary blobs in the repository): polyglots, decompression
bombs, truncated and lying files, EXIF tricks, malformed DICOM, ZIP slip and ZIP bombs.

Two corpora:

- `image_corpus()`: single files for `POST /api/v1/predictions` (and the decoder). Each case says
  what the API must answer: `rejected` cases a 4xx with one of `codes` and nothing stored;
  `accepted` cases are real images carrying a trick (odd EXIF, a misleading file name) that the
  content rule accepts: 201, never a 5xx.
- `zip_corpus()`: archives for `POST /api/v1/batches`. `archive` cases are refused whole (4xx,
  no batch); `entries` cases make a batch whose every item fails with a reason (documented: a bad
  entry is a failed item, the batch goes on), so no prediction is stored and nothing is written
  outside the batch directory.

Everything is small on the wire (the largest case is a few hundred KB) and builds in well under a
second; the sizes that matter (declared pixels, inflated bytes) are in the headers and streams.
Needs the `images` extra (numpy, Pillow, pydicom).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

Expect = Literal["rejected", "accepted"]


@dataclass(frozen=True)
class HostileFile:
    name: str  # the case's id (pytest ids, reports)
    filename: str  # the name sent in the multipart upload
    data: bytes
    content_type: str
    expect: Expect = "rejected"
    statuses: frozenset[int] = frozenset()  # acceptable HTTP statuses of a rejection
    codes: frozenset[str] = frozenset()  # acceptable error codes of a rejection
    why: str = ""


@dataclass(frozen=True)
class HostileZip:
    name: str
    data: bytes
    level: Literal["archive", "entries"]
    statuses: frozenset[int] = frozenset()  # archive level: the refusal's status
    codes: frozenset[str] = frozenset()
    reason_words: tuple[str, ...] = field(default=())  # entries: words every failed item's reason holds (any of)
    why: str = ""


# ---------------------------------------------------------------------------------------------
# building blocks

def _cell(h: int = 64, w: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([200 - yy % 50, 150 + xx % 60, 190 + (xx + yy) % 40], axis=2)
    noise = rng.integers(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, *,
            extra_chunks: bytes = b"") -> bytes:
    """A PNG written by hand: the header may declare anything, IDAT holds whatever stream we give."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra_chunks + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def deflate_zeros(n: int, level: int = 9) -> bytes:
    """zlib stream of n zero bytes, compressed piecewise so building it never holds n bytes."""
    c = zlib.compressobj(level)
    chunk = b"\x00" * (1 << 20)
    out = []
    left = n
    while left > 0:
        take = min(left, len(chunk))
        out.append(c.compress(chunk[:take]))
        left -= take
    out.append(c.flush())
    return b"".join(out)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is rewritten to declare width x height."""
    data = bytearray(encode(_cell(16, 16), "JPEG", quality=80))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", data, i + 5, height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def tiff_with_size(width: int, height: int) -> bytes:
    """A small real TIFF whose ImageWidth / ImageLength tags are rewritten."""
    data = bytearray(encode(_cell(16, 16), "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:  # SHORT
                struct.pack_into("<HI", data, entry + 2, 4, 1)  # retype to LONG, count 1
            struct.pack_into("<I", data, entry + 8, value)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(_cell(16, 16), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def jpeg_with_exif(exif: Image.Exif | bytes) -> bytes:
    return encode(_cell(48, 32), "JPEG", quality=85, exif=exif if isinstance(exif, bytes) else exif.tobytes())


def exif_orientation(value: int) -> bytes:
    """A TIFF-structured EXIF block whose Orientation (0x0112) is `value` (any 16-bit number)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, value & 0xFFFF) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def exif_huge_ifd() -> bytes:
    """An EXIF IFD that claims 65535 entries (it holds a few), a loop back to itself as the next
    IFD and an ExifIFD pointer far outside the block: parsers must bound all three."""
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x8769, 4, 1, 0x7FFFFFF0)
    ifd = struct.pack("<H", 0xFFFF) + entries + struct.pack("<I", 8)  # next IFD: itself
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def exif_big_block() -> bytes:
    """The largest EXIF a JPEG APP1 segment can hold (~64 KB): one UserComment of junk."""
    payload = b"A" * 65000
    # IFD0 with an ExifIFD pointer; the Exif IFD with UserComment (0x9286, UNDEFINED) of 65000 bytes.
    ifd0_off = 8
    exif_off = ifd0_off + 2 + 12 + 4
    data_off = exif_off + 2 + 12 + 4
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, exif_off) + struct.pack("<I", 0)
    exif_ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x9286, 7, len(payload), data_off) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", ifd0_off) + ifd0 + exif_ifd + payload


def tiny_zip(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), content, compress_type=compression)
    return buf.getvalue()


def _zip_raw(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, content in entries:
            zf.writestr(info, content)
    return buf.getvalue()


def _patch_sizes(data: bytes, *, file_size: int | None = None, compress_size: int | None = None) -> bytes:
    """Rewrites every entry's declared uncompressed (and/or compressed) size in the local
    headers and the central directory: a ZIP whose headers lie."""
    out = bytearray(data)
    pos = 0
    while (pos := out.find(b"PK\x03\x04", pos)) != -1:
        if compress_size is not None:
            struct.pack_into("<I", out, pos + 18, compress_size)
        if file_size is not None:
            struct.pack_into("<I", out, pos + 22, file_size)
        pos += 4
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) != -1:
        if compress_size is not None:
            struct.pack_into("<I", out, pos + 20, compress_size)
        if file_size is not None:
            struct.pack_into("<I", out, pos + 24, file_size)
        pos += 4
    return bytes(out)


def dicom_file(*, rows: int = 32, cols: int = 32, pixel_data: bytes | None = None, transfer_syntax: str | None = None,
               frames: int = 1, photometric: str = "RGB", samples: int = 3, omit_pixels: bool = False,
               preamble: bytes = b"\x00" * 128) -> bytes:
    """A DICOM file whose header may disagree with its pixels (pydicom writes what it is told)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.77.1.6")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(transfer_syntax) if transfer_syntax else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = preamble
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames != 1:
        ds.NumberOfFrames = frames
    if not omit_pixels:
        if pixel_data is None:
            pixel_data = np.asarray(_cell(min(rows, 64), min(cols, 64))).tobytes()[: rows * cols * samples]
        ds.PixelData = pixel_data
        ds["PixelData"].VR = "OB"
    # Written by hand: preamble, "DICM", the file meta as given (a wrong transfer syntax is the
    # point of some cases), then the dataset explicit-VR little endian whatever the meta claims.
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    fp = DicomBytesIO()
    fp.write(preamble[:128].ljust(128, b"\x00") + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


# ---------------------------------------------------------------------------------------------
# the single-file corpus

_413 = frozenset({413})
_415 = frozenset({415})
_422 = frozenset({422})


def image_corpus() -> list[HostileFile]:
    cell = _cell()
    png = encode(cell, "PNG")
    jpeg = encode(cell, "JPEG", quality=90)
    tiff = encode(cell, "TIFF")
    zip_payload = tiny_zip({"payload.txt": b"second payload " * 20})
    html = b"<html><body><script>alert(document.cookie)</script></body></html>\n"
    cases: list[HostileFile] = []

    def reject(name: str, filename: str, data: bytes, ctype: str, statuses: frozenset[int], *codes: str,
               why: str) -> None:
        cases.append(HostileFile(name, filename, data, ctype, "rejected", statuses, frozenset(codes), why))

    def accept(name: str, filename: str, data: bytes, ctype: str, *, why: str) -> None:
        cases.append(HostileFile(name, filename, data, ctype, "accepted", why=why))

    # polyglots
    reject("png_plus_zip", "cell.png", png + zip_payload, "image/png", _422, "polyglot",
           why="a PNG with a ZIP after IEND (opens as both)")
    reject("jpeg_plus_html", "cell.jpg", jpeg + html, "image/jpeg", _422, "polyglot",
           why="a JPEG with an HTML page after EOI")
    reject("jpeg_plus_zip", "cell.jpg", jpeg + zip_payload, "image/jpeg", _422, "polyglot",
           why="a JPEG with a ZIP after EOI (GIFAR-style)")
    reject("dicom_preamble_png", "cell.dcm", dicom_file(preamble=png[:128].ljust(128, b"\x00")), "application/dicom",
           _422, "polyglot", why="a DICOM whose 128-byte preamble is a PNG header")
    reject("dicom_preamble_pe", "cell.dcm", dicom_file(preamble=b"MZ".ljust(128, b"\x90")), "application/dicom",
           _422, "polyglot", why="a DICOM whose preamble is a Windows executable (PE/DICOM polyglot)")
    accept("jpeg_with_html_comment", "cell.jpg", encode(cell, "JPEG", quality=90, comment=html), "image/jpeg",
           why="HTML inside a JPEG COM segment is image metadata; the image is served back re-encoded as PNG")

    # decompression bombs
    reject("png_declares_10e10_pixels", "bomb.png", raw_png(100_000, 100_000, 8, 2, zlib.compress(b"\x00" * 64)),
           "image/png", _413, "too_many_pixels", why="a PNG header declaring 100000 x 100000")
    reject("png_1bit_pixel_bomb", "bomb.png",
           raw_png(20_000, 20_000, 1, 0, deflate_zeros(20_000 * (20_000 // 8 + 1))), "image/png", _413,
           "too_many_pixels", why="400 MP of 1-bit zeros in ~50 KB (valid stream)")
    accept("png_idat_overflow", "cell.png", raw_png(64, 64, 8, 2, deflate_zeros(256 << 20)), "image/png",
           why="a 64x64 PNG whose IDAT would inflate to 256 MB: the decoder stops at the declared size "
               "(measured: milliseconds), so the image is an ordinary black square")
    reject("jpeg_declares_65500_square", "big.jpg", jpeg_with_size(65_500, 65_500), "image/jpeg", _413,
           "too_many_pixels", why="a JPEG SOF declaring 65500 x 65500")
    reject("tiff_declares_huge", "big.tif", tiff_with_size(1_000_000, 1_000_000), "image/tiff", _413,
           "too_many_pixels", why="a TIFF declaring 10^6 x 10^6")
    reject("bmp_declares_huge", "big.bmp", bmp_with_size(50_000, 50_000), "image/bmp", _413 | _422,
           "too_many_pixels", "corrupt", why="a BMP declaring 50000 x 50000")
    reject("png_zero_width", "zero.png", raw_png(0, 10, 8, 2, zlib.compress(b"")), "image/png", _422,
           "empty", "corrupt", why="a PNG of width 0")

    # truncated
    reject("png_truncated_half", "cell.png", png[: len(png) // 2], "image/png", _422, "truncated", "corrupt",
           why="a PNG cut in half")
    reject("png_header_only", "cell.png", png[:33], "image/png", _422, "truncated", "corrupt",
           why="signature and IHDR only")
    reject("jpeg_truncated_half", "cell.jpg", jpeg[: len(jpeg) // 2], "image/jpeg", _422, "truncated", "corrupt",
           why="a JPEG cut in half")
    reject("jpeg_soi_only", "cell.jpg", b"\xff\xd8\xff", "image/jpeg", _422, "truncated", "corrupt",
           why="a JPEG start marker and nothing else")
    reject("tiff_truncated_half", "cell.tif", tiff[: len(tiff) // 2], "image/tiff", _422, "truncated", "corrupt",
           why="a TIFF cut in half")
    reject("tiff_header_only", "cell.tif", b"II*\x00\x08\x00\x00\x00", "image/tiff", _422, "truncated", "corrupt",
           why="a TIFF header pointing at a missing IFD")

    # wrong magic / extension mismatch
    reject("html_named_jpg", "cell.jpg", html, "image/jpeg", _415, "not_an_image",
           why="an HTML page named .jpg with an image content type")
    reject("pe_named_png", "cell.png", b"MZ" + b"\x90" * 200, "image/png", _415, "not_an_image",
           why="an executable named .png")
    reject("zip_named_png", "cell.png", zip_payload, "image/png", _415, "unsupported_type", "not_an_image",
           why="a ZIP named .png")
    reject("gif_named_png", "cell.png", encode(cell.convert("P"), "GIF"), "image/png", _415, "unsupported_type",
           why="a GIF named .png")
    reject("png_magic_jpeg_body", "cell.png", b"\x89PNG\r\n\x1a\n" + jpeg[2:], "image/png", _422, "corrupt",
           "truncated", why="PNG signature followed by a JPEG body")
    reject("jpeg_magic_png_body", "cell.jpg", b"\xff\xd8\xff" + png[8:], "image/jpeg", _422, "corrupt", "truncated",
           why="JPEG start marker followed by a PNG body")
    accept("jpeg_named_html", "page.html", jpeg, "text/html",
           why="a real JPEG with an HTML name and type: the content decides, the name is only kept as text")

    # EXIF tricks: real images whose metadata lies; never a 5xx
    for value in (0, 9, 255, 65535):
        accept(f"exif_orientation_{value}", "cell.jpg", jpeg_with_exif(exif_orientation(value)), "image/jpeg",
               why=f"EXIF Orientation={value} (valid range 1-8)")
    accept("exif_orientation_6", "cell.jpg", jpeg_with_exif(exif_orientation(6)), "image/jpeg",
           why="a valid rotation (90 deg), applied before classification")
    accept("exif_huge_ifd_loop", "cell.jpg", jpeg_with_exif(exif_huge_ifd()), "image/jpeg",
           why="EXIF IFD claiming 65535 entries, looping to itself, pointing outside the block")
    accept("exif_64k_block", "cell.jpg", jpeg_with_exif(exif_big_block()), "image/jpeg",
           why="the largest possible EXIF segment")

    # malformed DICOM
    reject("dicom_no_pixel_data", "cell.dcm", dicom_file(omit_pixels=True), "application/dicom", _415,
           "not_an_image", why="a DICOM without Pixel Data")
    reject("dicom_unknown_transfer_syntax", "cell.dcm", dicom_file(transfer_syntax="1.2.3.4.5.6"),
           "application/dicom", _415 | _422, "unsupported_type", "corrupt",
           why="a transfer syntax UID nobody knows")
    reject("dicom_jpeg_syntax_raw_pixels", "cell.dcm", dicom_file(transfer_syntax="1.2.840.10008.1.2.4.50"),
           "application/dicom", _415 | _422, "unsupported_type", "corrupt",
           why="declares JPEG Baseline but the pixels are raw")
    reject("dicom_huge_rows_cols", "cell.dcm", dicom_file(rows=65_535, cols=65_535, pixel_data=b"\x00" * 64),
           "application/dicom", _413, "too_many_pixels", why="Rows = Columns = 65535")
    reject("dicom_short_pixel_data", "cell.dcm", dicom_file(rows=512, cols=512, pixel_data=b"\x00" * 100),
           "application/dicom", _415 | _422, "unsupported_type", "corrupt", "truncated",
           why="512x512 RGB declared, 100 bytes of pixels")
    reject("dicom_two_frames", "cell.dcm", dicom_file(frames=2, pixel_data=b"\x00" * (32 * 32 * 3 * 2)),
           "application/dicom", _422, "multi_frame", why="NumberOfFrames = 2")
    reject("dicom_negative_frames", "cell.dcm", dicom_file(frames=-5), "application/dicom", _415 | _422,
           "unsupported_type", "corrupt", why="NumberOfFrames = -5")
    reject("dicom_zero_rows", "cell.dcm", dicom_file(rows=0, pixel_data=b""), "application/dicom", _422,
           "empty", why="Rows = 0")
    reject("dicom_magic_garbage", "cell.dcm", b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4, "application/dicom",
           _415 | _422, "corrupt", "not_an_image", why="DICM magic followed by garbage")
    good_dicom = dicom_file()
    reject("dicom_truncated", "cell.dcm", good_dicom[: len(good_dicom) - 1500], "application/dicom", _415 | _422,
           "corrupt", "unsupported_type", "truncated", why="a DICOM cut inside its pixel data")
    reject("dicom_four_samples", "cell.dcm", dicom_file(samples=4, photometric="ARGB",
                                                        pixel_data=b"\x00" * (32 * 32 * 4)),
           "application/dicom", _415, "unsupported_type", why="SamplesPerPixel = 4")
    return cases


# ---------------------------------------------------------------------------------------------
# the ZIP corpus

def zip_corpus() -> list[HostileZip]:
    png = encode(_cell(), "PNG")
    cases: list[HostileZip] = []

    def archive(name: str, data: bytes, statuses: frozenset[int], *codes: str, why: str) -> None:
        cases.append(HostileZip(name, data, "archive", statuses, frozenset(codes), why=why))

    def entries(name: str, data: bytes, *words: str, why: str) -> None:
        cases.append(HostileZip(name, data, "entries", reason_words=words, why=why))

    # ZIP slip: names that would leave the extraction folder
    entries("slip_dotdot", tiny_zip({"../../../../tmp/hv-slip.png": png}), "traversal", why="../ in the entry name")
    entries("slip_dotdot_inner", tiny_zip({"cells/../../hv-slip.png": png}), "traversal", why="a/../../ in the name")
    entries("slip_absolute", tiny_zip({"/tmp/hv-slip-abs.png": png}), "absolute", why="an absolute path")
    entries("slip_drive", tiny_zip({"C:/Windows/hv-slip.png": png}), "absolute", why="a Windows drive letter")
    entries("slip_backslash", tiny_zip({"..\\..\\hv-slip.png": png}), "backslash", why="backslash traversal")
    # (A NUL in a name is no case: Python's zipfile cuts names at NUL when writing and reading, and
    # entries are never extracted by name.)
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (0o120777 << 16)
    entries("symlink", _zip_raw([(link, b"/etc/passwd")]), "symbolic", why="a symbolic link entry")
    enc = bytearray(tiny_zip({"cell.png": png}, compression=zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        p = enc.find(sig)
        struct.pack_into("<H", enc, p + off, struct.unpack("<H", enc[p + off : p + off + 2])[0] | 1)
    entries("encrypted_flag", bytes(enc), "encrypted", why="an entry flagged as encrypted")

    # ZIP bombs
    entries("bomb_high_ratio", tiny_zip({"zeros.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * (8 << 20)}),
            "ratio", "zip bomb", why="8 MB of zeros in ~8 KB (ratio ~1000:1)")
    entries("bomb_lying_size", _patch_sizes(tiny_zip({"zeros.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * (9 << 20)}),
                                            file_size=4096),
            "ratio", "zip bomb", "cannot be read", "over the limit",
            why="declares 4 KB, inflates to 9 MB: checked on the bytes actually inflated")
    inner = tiny_zip({f"z{i}.png": b"\x00" * (1 << 20) for i in range(8)})
    entries("bomb_nested", tiny_zip({f"layer{i}.zip": inner for i in range(4)}), "nested",
            why="ZIPs inside a ZIP (a nested bomb): never opened")
    entries("bomb_nested_renamed", tiny_zip({"cell.png": inner}), "nested", why="a ZIP inside, named .png")
    archive("bomb_declared_total", _patch_sizes(tiny_zip({f"c{i}.png": png for i in range(3)}), file_size=400 << 20),
            frozenset({413}), "archive_too_large", why="three entries declaring 400 MB each")
    archive("too_many_entries", tiny_zip({f"c{i}.png": b"x" for i in range(1001)}, compression=zipfile.ZIP_STORED),
            frozenset({413}), "too_many_entries", why="1001 entries")
    archive("not_a_zip", b"PK\x03\x04" + b"\x00" * 200, frozenset({422}), "invalid_archive", why="ZIP magic, no archive")
    too_new = bytearray(tiny_zip({"cell.png": png}))
    struct.pack_into("<H", too_new, too_new.find(b"PK\x01\x02") + 6, 64)
    archive("zip_version_6_4", bytes(too_new), frozenset({422}), "invalid_archive",
            why="the central directory asks for ZIP version 6.4 to extract (zipfile: NotImplementedError)")
    archive("truncated_zip", tiny_zip({"cell.png": png})[:-30], frozenset({422}), "invalid_archive",
            why="the central directory cut off")

    bad_deflate = bytearray(tiny_zip({"cell.png": png}))
    bad_deflate[30 + len("cell.png") : 30 + len("cell.png") + 5] = b"\x00\x01\x00\x00\x00"  # stored block, LEN != ~NLEN
    entries("corrupt_deflate", bytes(bad_deflate), "cannot be read",
            why="an entry whose deflate stream is invalid (zlib.error while inflating)")

    # things in a well-formed archive that are not images
    entries("non_images", tiny_zip({"readme.txt": b"hello", "page.html": b"<script>alert(1)</script>",
                                    "empty.png": b""}), "not a recognised image", "empty",
            why="text, HTML and an empty file")
    return cases


def zip_of_images(cases: list[HostileFile]) -> bytes:
    """One ZIP holding the given single-file cases (names made unique): bad images inside an
    archive pass the gateway's magic check and are judged by the pipeline, item by item."""
    return tiny_zip({f"{i:03d}-{c.name}{_suffix(c.filename)}": c.data for i, c in enumerate(cases)},
                    compression=zipfile.ZIP_STORED)


def _suffix(filename: str) -> str:
    return filename[filename.rfind("."):] if "." in filename else ""
