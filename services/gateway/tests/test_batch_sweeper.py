"""The batch sweeper against real Redis and real Celery messages: lost items are enqueued again,
queued or unacknowledged ones never twice."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
import redis

from hemovision_gateway.batches.processing import ItemTask
from hemovision_gateway.batches.sweeper import TASKS_FILE, items_in_broker, sweep, sweep_once_locked, write_tasks
from hemovision_gateway.batches.worker import QUEUE, enqueue, make_celery


@pytest.fixture
def broker(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def make_batch(root, batch_id: str, n: int) -> tuple[list[ItemTask], os.PathLike]:
    directory = root / "org-1" / batch_id
    directory.mkdir(parents=True)
    tasks = []
    for i in range(n):
        path = directory / f"{i:05d}.bin"
        path.write_bytes(b"image")
        tasks.append(ItemTask(batch_id=batch_id, index=i, organization_id="org-1", user_id="u1",
                              filename=f"c{i}.png", path=str(path)))
    write_tasks(directory, tasks)
    return tasks, directory


def age(directory, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(directory / TASKS_FILE, (old, old))


def test_only_lost_items_are_enqueued_again(tmp_path, settings, broker):
    celery = make_celery(settings)
    tasks, directory = make_batch(tmp_path, "b1", 4)
    enqueue(celery, tasks[1])  # still queued
    # a message a worker holds unacknowledged: kombu keeps [message, exchange, routing key]
    held = json.loads(broker.lrange(QUEUE, 0, 0)[0])
    args, kwargs, embed = json.loads(base64.b64decode(held["body"]))
    kwargs["index"] = 2
    held["body"] = base64.b64encode(json.dumps([args, kwargs, embed]).encode()).decode()
    broker.hset("unacked", "tag-2", json.dumps([held, "", QUEUE]))
    os.remove(tasks[3].path)  # item 3 is done: its file is gone
    assert items_in_broker(broker, QUEUE) == {("b1", 1), ("b1", 2)}

    sent = []
    assert sweep(tmp_path, broker, QUEUE, sent.append, stale_after_s=60) == []  # too young to judge
    age(directory, 120)
    requeued = sweep(tmp_path, broker, QUEUE, lambda t: (sent.append(t), enqueue(celery, t)), stale_after_s=60)
    assert [t.index for t in requeued] == [0] and [t.index for t in sent] == [0]
    assert sent[0] == tasks[0]  # the whole task, as first enqueued
    assert items_in_broker(broker, QUEUE) == {("b1", 0), ("b1", 1), ("b1", 2)}
    # the batch's clock restarted: the next pass leaves it alone
    assert sweep(tmp_path, broker, QUEUE, sent.append, stale_after_s=60) == []


def test_one_process_per_period_and_unreadable_lists_are_skipped(tmp_path, settings, broker):
    tasks, directory = make_batch(tmp_path, "b2", 2)
    age(directory, 120)
    broken = tmp_path / "org-1" / "b3"
    broken.mkdir()
    (broken / TASKS_FILE).write_text("{not json")
    age(broken, 120)
    sent = []
    assert [t.index for t in sweep_once_locked(tmp_path, broker, QUEUE, sent.append, stale_after_s=60,
                                               lock_s=30)] == [0, 1]
    age(directory, 120)
    assert sweep_once_locked(tmp_path, broker, QUEUE, sent.append, stale_after_s=60, lock_s=30) == []  # locked
    assert len(sent) == 2
