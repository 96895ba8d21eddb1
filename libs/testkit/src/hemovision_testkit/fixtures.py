"""Fixtures: `postgres_url` (a fresh database per test module, dropped after) and `redis_url`
(a flushed Redis database). A missing PostgreSQL or Redis fails the test run: never a skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from hemovision_database import drop_database, ensure_database

POSTGRES_SERVER = os.environ.get("HV_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("HV_TEST_REDIS", "redis://127.0.0.1:6379")
# Redis databases 10..15 are the tests'; `make up` uses database 0.
REDIS_TEST_DB = int(os.environ.get("HV_TEST_REDIS_DB", "11"))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """URL of a brand-new empty database; dropped when the module's tests finish."""
    url = f"{POSTGRES_SERVER}/hv_test_{uuid.uuid4().hex[:12]}"
    try:
        ensure_database(url)
    except Exception as exc:  # a clear failure, not a skip
        pytest.fail(f"PostgreSQL is required at {POSTGRES_SERVER}: {exc}", pytrace=False)
    yield url
    drop_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a flushed Redis test database."""
    url = f"{REDIS_SERVER}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis is required at {REDIS_SERVER}: {exc}", pytrace=False)
    yield url
    client.flushdb()
    client.close()
