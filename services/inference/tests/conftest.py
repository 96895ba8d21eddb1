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
