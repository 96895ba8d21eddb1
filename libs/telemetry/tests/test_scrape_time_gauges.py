"""Scrape-time gauges declared in one line: a SQL query on a real PostgreSQL, a Redis list length;
a source that is down leaves its series out of the scrape and never fails it."""

from __future__ import annotations

import uuid

import redis
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from hemovision_telemetry.metrics import redis_list_gauge, sql_gauge


def test_a_sql_gauge_reads_its_query_at_every_scrape(postgres_url):
    engine = create_engine(postgres_url)
    registry = CollectorRegistry()
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE jobs (id uuid, kind text, status text, epoch int, total int)"))
        job = uuid.uuid4()
        sql_gauge(engine, "test_jobs", "Jobs by kind and status.", ["kind", "status"],
                  "SELECT kind, status, count(*) FROM jobs GROUP BY kind, status", registry=registry)
        sql_gauge(engine, "test_progress", "Progress of running jobs.", ["job_id"],
                  "SELECT id, CASE WHEN total > 0 THEN epoch::float / total END FROM jobs WHERE status = 'running'",
                  registry=registry)
        sql_gauge(engine, "test_epochs", "Epochs of every job.", [], "SELECT sum(epoch) FROM jobs", registry=registry)
        assert registry.get_sample_value("test_jobs", {"kind": "training", "status": "running"}) is None
        assert registry.get_sample_value("test_epochs") == 0  # NULL (no rows to sum) counts as 0
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jobs VALUES (:id, 'training', 'running', 3, 4), "
                              "(gen_random_uuid(), 'training', 'queued', 0, 4), "
                              "(gen_random_uuid(), 'training', 'queued', 0, 0)"), {"id": job})
        assert registry.get_sample_value("test_jobs", {"kind": "training", "status": "queued"}) == 2
        assert registry.get_sample_value("test_progress", {"job_id": str(job)}) == 0.75  # a uuid label as text
        assert registry.get_sample_value("test_epochs") == 3
        # a later declaration of the same name replaces the earlier one (a newer server's pool)
        sql_gauge(engine, "test_epochs", "Epochs of every job.", [], "SELECT 42", registry=registry)
        assert registry.get_sample_value("test_epochs") == 42
    finally:
        engine.dispose()
    down = CollectorRegistry()
    sql_gauge(create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}),
              "test_jobs", "Jobs.", ["kind"], "SELECT 'x', 1", registry=down)
    assert down.get_sample_value("test_jobs", {"kind": "x"}) is None
    assert any(m.name == "test_jobs" for m in down.collect())  # the family is still there, empty


def test_a_redis_list_gauge_reads_lengths(redis_url):
    registry = CollectorRegistry()
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush("q1", b"a", b"b")
        redis_list_gauge(redis_url, "test_queue_depth", "Messages waiting.", "queue", ["q1", "q2"], registry=registry)
        assert registry.get_sample_value("test_queue_depth", {"queue": "q1"}) == 2
        assert registry.get_sample_value("test_queue_depth", {"queue": "q2"}) == 0
        client.rpush("q2", b"c")
        assert registry.get_sample_value("test_queue_depth", {"queue": "q2"}) == 1
    finally:
        client.close()
