"""The retention purge is scheduled: Celery beat's schedule in make_celery names a registered
task, and that task runs history's own purge command against a real (migrated) database."""

from __future__ import annotations

import json

import pytest

from hemovision_gateway.batches import worker
from hemovision_gateway.settings import Settings
from hemovision_history.__main__ import migrate
from hemovision_history.settings import Settings as HistorySettings


def test_beat_schedules_a_daily_purge_on_the_worker_queue(redis_url):
    celery = worker.make_celery(Settings(redis_url=redis_url))
    entry = celery.conf.beat_schedule["history-retention-purge"]
    assert entry["task"] == worker.PURGE_TASK_NAME and entry["task"] in worker.app.tasks
    assert entry["options"]["queue"] == worker.QUEUE
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({3}, {0})
    assert celery.conf.timezone == "UTC"


def test_purge_task_runs_the_history_purge(postgres_url, tmp_path, monkeypatch):
    migrate(HistorySettings(database_url=postgres_url))
    monkeypatch.setenv("HV_HISTORY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("HV_HISTORY_BLOB_ROOT", str(tmp_path / "blobs"))
    monkeypatch.setenv("HV_HISTORY_RETENTION_DAYS", "30")
    result = json.loads(worker.purge_history.run())
    assert result["purged_blobs"] == 0 and result["retention_days"] == 30 and result["audit_retention_days"] == 400

    monkeypatch.setenv("HV_HISTORY_DATABASE_URL", postgres_url + "_missing")
    with pytest.raises(RuntimeError, match="purge exited"):
        worker.purge_history.run()
