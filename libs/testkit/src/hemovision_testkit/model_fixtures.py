"""Fixtures for the tests that serve a model (loaded as a pytest plugin; TensorFlow is imported only
when one of them is used): `contract_models` (two different contract SavedModels, built once per
session) and `model_base` (a fresh model base holding contract model version 1)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def contract_models(tmp_path_factory) -> dict[int, Path]:
    """Versions 1 and 2 (seed 1 / seed 2), to copy into model bases with publish_version."""
    from hemovision_testkit.contract_model import build_contract_model

    root = tmp_path_factory.mktemp("contract")
    return {
        1: build_contract_model(root / "a", seed=1, version=1),
        2: build_contract_model(root / "b", seed=2, version=2),
    }


@pytest.fixture
def model_base(tmp_path, contract_models) -> Path:
    from hemovision_testkit.contract_model import publish_version

    base = tmp_path / "models"
    publish_version(contract_models[1], base, 1)
    return base
