"""Fixtures: a contract SavedModel built once per session (tiny, same signatures/assets as the real one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hemovision_inference.testing import publish_version as publish

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32  # also hemovision_inference.testing.TEST_SIZE


@pytest.fixture(scope="session")
def contract_models(tmp_path_factory) -> dict[int, Path]:
    """Two different contract SavedModels (seed 1 / seed 2), to copy into model bases as versions."""
    from hemovision_inference.testing import build_contract_model

    root = tmp_path_factory.mktemp("contract")
    return {
        1: build_contract_model(root / "a", input_size=SIZE, seed=1, version=1),
        2: build_contract_model(root / "b", input_size=SIZE, seed=2, version=2),
    }




@pytest.fixture
def model_base(tmp_path, contract_models) -> Path:
    base = tmp_path / "models"
    publish(contract_models[1], base, 1)
    return base


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (still runs in CI: never skipped)")


REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def serving_model(contract_models) -> Path:
    """The shipped default model (models/hemovision/<highest>) when it exists, else the contract model."""
    shipped = REPO_ROOT / "models" / "hemovision"
    versions = sorted(int(p.name) for p in shipped.iterdir() if p.name.isdigit()) if shipped.is_dir() else []
    for v in reversed(versions):
        if (shipped / str(v) / "variables" / "variables.index").is_file():
            return shipped / str(v)
    return contract_models[1]
