"""Fault tests on a real stack (bench/reliability/harness.py): the system as `make up` starts it on
ports + HV_RELIABILITY_PORT_OFFSET (14000), its own redis-server (to be killed) and its own
database on the test PostgreSQL. Every process is stopped at the end, also when a test fails."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "reliability"))

from harness import DEFAULT_OFFSET, OwnRedis, System  # noqa: E402

from hemovision_database import drop_database  # noqa: E402

POSTGRES = os.environ.get("HV_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/test_faults" in str(item.path):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[OwnRedis]:
    redis = OwnRedis(6379 + DEFAULT_OFFSET)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def system(own_redis: OwnRedis) -> Iterator[System]:
    database_url = f"{POSTGRES}/hv_rel_{uuid.uuid4().hex[:10]}"
    s = System(database_url=database_url, redis_url=own_redis.url, offset=DEFAULT_OFFSET, workers=False,
               extra_env={"HV_GATEWAY_RATE_LIMIT_REQUESTS": "1000000"})
    watcher_loop = asyncio.new_event_loop()
    try:
        s.start()
        # bench mode (a devstack without restart supervision): the harness's watcher restarts
        import threading

        if s.mode == "bench":
            threading.Thread(target=watcher_loop.run_until_complete, args=(s.watch(),), daemon=True).start()
        yield s
    except BaseException:
        print(s.supervisor_lines(), s.log_tail("gateway"), s.log_tail("model-server"), sep="\n")
        raise
    finally:
        s.stop_watching()
        s.stop()
        try:
            drop_database(database_url)
        except Exception:  # noqa: BLE001
            pass
