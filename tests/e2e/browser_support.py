"""Chromium for the e2e tests that drive the UI of the real system: the `browser` (module) and
`page` (per test) fixtures (hemovision_testkit.browser, shared with the fake-peer browser suite),
and sign_in. conftest.py makes the fixtures available to every test module."""

from __future__ import annotations

import pytest
from hemovision_testkit import browser as chromium_pages
from hemovision_testkit.browser import TIMEOUT_MS as TIMEOUT
from hemovision_testkit.browser import sign_in

__all__ = ["TIMEOUT", "browser", "page", "sign_in"]


@pytest.fixture(scope="module")
def browser():
    with chromium_pages.chromium() as b:
        yield b


@pytest.fixture
def page(browser, system):
    with chromium_pages.page(browser) as pg:
        yield pg
