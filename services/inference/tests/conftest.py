"""Inference tests: `contract_models` and `model_base` come from hemovision_testkit's model fixtures;
`serving_model` is the shipped default model where it exists."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # inference_fakes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[3]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (still runs in CI: never skipped)")


@pytest.fixture(scope="session")
def serving_model(contract_models) -> Path:
    """The shipped default model (models/hemovision/<highest>) when it exists, else the contract model."""
    shipped = REPO_ROOT / "models" / "hemovision"
    versions = sorted(int(p.name) for p in shipped.iterdir() if p.name.isdigit()) if shipped.is_dir() else []
    for v in reversed(versions):
        if (shipped / str(v) / "variables" / "variables.index").is_file():
            return shipped / str(v)
    return contract_models[1]


@pytest.fixture
def tokens():
    from hemovision_testkit.tokens import TokenFactory

    return TokenFactory()


@pytest.fixture
def auth(tokens) -> tuple:
    """Metadata of a lab_user's access token."""
    return (("authorization", f"Bearer {tokens.issue(role='lab_user')}"),)
