"""The batch ZIP reader (batches.storage.build_items) against hostile archives
(hemovision_testkit.hostile) and hypothesis mutations of them: it answers an ApiError 413/422 for
the whole archive or a list of items, each stored or failed with a reason; nothing but
<index>.bin files ever lands in the staging folder, nothing outside it; never another exception.
The REST answers for the same archives: tests/e2e/test_hostile_inputs.py."""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemovision_gateway.batches import storage
from hemovision_gateway.errors import ApiError
from hemovision_gateway.settings import Settings
from hemovision_testkit.hostile import _cell, encode, image_corpus, tiny_zip, zip_corpus, zip_of_images

SETTINGS = Settings(batch_inline=True)
CASES = zip_corpus()
EXAMPLES = int(os.environ.get("HV_FUZZ_EXAMPLES", "300"))
PER_CALL_S = 5.0


def read_checked(data: bytes, root: Path) -> list[storage.Item] | ApiError:
    staging = root / "staging"
    before = {p for p in root.rglob("*")}
    start = time.monotonic()
    try:
        items = storage.build_items([("upload.zip", io.BytesIO(data))], SETTINGS, staging)
    except ApiError as exc:
        assert exc.status in (413, 422) and exc.code and exc.message
        result: list[storage.Item] | ApiError = exc
    else:
        result = items
        assert [i.index for i in items] == list(range(len(items)))
        for item in items:
            assert item.stored != bool(item.error), item
        stored = {f"{i.index:05d}.bin" for i in items if i.stored}
        written = {p.name for p in staging.iterdir()} if staging.exists() else set()
        assert written == stored, (written, stored)
        for item in items:
            if item.stored:
                assert (staging / f"{item.index:05d}.bin").stat().st_size <= SETTINGS.max_image_bytes
    finally:
        assert time.monotonic() - start < PER_CALL_S
    after = {p for p in root.rglob("*") if staging not in p.parents and p != staging}
    assert after == before, after - before  # nothing outside the staging folder
    return result


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_archives(case, tmp_path):
    result = read_checked(case.data, tmp_path)
    if case.level == "archive":
        assert isinstance(result, ApiError), case.why
        assert result.status in case.statuses and result.code in case.codes, (result.status, result.code)
        return
    assert isinstance(result, list) and result, case.why
    for item in result:
        assert not item.stored and any(w in item.error for w in case.reason_words), (case.name, item)


def test_bad_images_in_a_zip_are_judged_by_content(tmp_path):
    """Entries that start like an accepted image are stored for the pipeline to judge (item by item,
    in the worker); the rest fail here with a reason."""
    from hemovision_contracts.image_formats import sniff_format

    rejected = [c for c in image_corpus() if c.expect == "rejected"]
    items = read_checked(zip_of_images(rejected), tmp_path)
    assert isinstance(items, list) and len(items) == len(rejected)
    for case, item in zip(rejected, items):
        assert item.stored == (sniff_format(case.data) is not None), (case.name, item)


PNG = encode(_cell(16, 16), "PNG")
SEEDS = [c.data for c in CASES if len(c.data) < 120_000] + [
    tiny_zip({"a.png": PNG, "b/c.png": PNG}),
    tiny_zip({"a.png": PNG}, compression=zipfile.ZIP_STORED),
    tiny_zip({"a.png": PNG, "x.zip": tiny_zip({"y.png": PNG})}),
]
# Fields of local headers (flags 6, method 8, sizes 18/22, name length 26, extra length 28) and the
# central directory (flags 8, method 10, sizes 20/24, name/extra/comment lengths 28-32, attrs 38,
# local header offset 42); in the end record: entry counts 8/10, directory size/offset 12/16.
LOCAL, CENTRAL, END = (6, 8, 18, 22, 26, 28), (8, 10, 20, 24, 28, 30, 32, 38, 42), (8, 10, 12, 16, 20)


def _patch(data: bytearray, sig: bytes, which: int, offset: int, value: int) -> None:
    positions = []
    pos = 0
    while (pos := data.find(sig, pos)) != -1:
        positions.append(pos)
        pos += 4
    if not positions:
        return
    at = positions[which % len(positions)] + offset
    width = 4 if offset in (18, 20, 22, 24, 38, 42, 12, 16) else 2
    if at + width <= len(data):
        struct.pack_into("<I" if width == 4 else "<H", data, at, value & (0xFFFFFFFF if width == 4 else 0xFFFF))


@settings(max_examples=EXAMPLES, deadline=int(PER_CALL_S * 1000), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(SEEDS),
    fields=st.lists(st.tuples(st.sampled_from([(b"PK\x03\x04", o) for o in LOCAL] + [(b"PK\x01\x02", o) for o in CENTRAL]
                                              + [(b"PK\x05\x06", o) for o in END]),
                              st.integers(0, 8), st.sampled_from([0, 1, 8, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0o120777 << 16])),
                    max_size=4),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_archives_only_raise_documented_errors(base, fields, edits, cut, tmp_path_factory):
    data = bytearray(base)
    for (sig, offset), which, value in fields:
        _patch(data, sig, which, offset, value)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    read_checked(b"PK\x03\x04" + bytes(data[4:]) if len(data) >= 4 else bytes(data),
                 tmp_path_factory.mktemp("zip"))
