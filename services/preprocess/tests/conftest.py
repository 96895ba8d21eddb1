from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbc_128"


@pytest.fixture(scope="session")
def pbc_image_bytes() -> bytes:
    path = DATA / "neutrophil"
    files = sorted(path.glob("*.jpg")) if path.is_dir() else []
    if not files:
        pytest.fail(f"the PBC data set is required at {DATA}", pytrace=False)
    return files[0].read_bytes()
