"""Model server tests: `contract_models` and `model_base` come from hemovision_testkit's model fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
