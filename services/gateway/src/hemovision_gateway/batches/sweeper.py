"""Re-enqueues batch items whose broker message was lost.

kombu's Redis transport takes a message off the queue (BRPOP) a few milliseconds before it
records it as unacknowledged; a worker killed inside that window loses the message for good
(celery/kombu#305), and its item would stay pending forever. Every batch directory keeps its
item tasks (`tasks.json`) beside the item files, and an item file exists until its item is
recorded. Every `interval_s`, one gateway process (a Redis lock) looks at batch directories
untouched for `stale_after_s`: an item whose file is still there but whose message is neither
queued nor unacknowledged is enqueued again (items are idempotent on (batch, index)), and the
directory's clock restarts. Items still waiting in the queue are never duplicated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import redis

from hemovision_gateway.batches.processing import ItemTask

log = logging.getLogger(__name__)

TASKS_FILE = "tasks.json"
LOCK_KEY = "hv:gw:batch-sweeper"


def write_tasks(directory: Path, tasks: list[ItemTask]) -> None:
    """Stores a batch's item tasks beside its item files (before they are enqueued)."""
    tmp = directory / f".{TASKS_FILE}.tmp"
    tmp.write_text(json.dumps([asdict(t) for t in tasks]))
    os.replace(tmp, directory / TASKS_FILE)


def _message_item(raw: bytes | str | dict) -> tuple[str, int] | None:
    """(batch_id, index) of a Celery message as kombu stores it in Redis, or None."""
    try:
        message = raw if isinstance(raw, dict) else json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _args, kwargs, _embed = json.loads(body)
        return str(kwargs["batch_id"]), int(kwargs["index"])
    except (ValueError, KeyError, TypeError):
        return None


def items_in_broker(client, queue: str) -> set[tuple[str, int]]:
    """Items with a message in the queue (every priority sub-queue) or unacknowledged."""
    found: set[tuple[str, int]] = set()
    for key in client.scan_iter(match=f"{queue}*", count=100):
        if client.type(key) in (b"list", "list"):
            found.update(filter(None, (_message_item(raw) for raw in client.lrange(key, 0, -1))))
    for raw in client.hvals("unacked"):
        try:
            item = _message_item(json.loads(raw)[0])  # [message, exchange, routing key]
        except (ValueError, IndexError, TypeError):
            continue
        if item:
            found.add(item)
    return found


def _batch_dirs(upload_dir: Path) -> Iterable[Path]:
    if not upload_dir.is_dir():
        return
    for owner in upload_dir.iterdir():
        if owner.is_dir() and not owner.name.startswith("."):
            for batch in owner.iterdir():
                if (batch / TASKS_FILE).is_file():
                    yield batch


def sweep(upload_dir: Path, client, queue: str, enqueue: Callable[[ItemTask], None], *,
          stale_after_s: float, now: float | None = None) -> list[ItemTask]:
    """One pass; returns the items enqueued again."""
    now = time.time() if now is None else now
    present: set[tuple[str, int]] | None = None
    requeued: list[ItemTask] = []
    for directory in _batch_dirs(upload_dir):
        tasks_file = directory / TASKS_FILE
        try:
            if now - tasks_file.stat().st_mtime < stale_after_s:
                continue
            tasks = [ItemTask(**t) for t in json.loads(tasks_file.read_text())]
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable batch task list", extra={"path": str(tasks_file), "error": str(exc)})
            continue
        pending = [t for t in tasks if Path(t.path).exists()]
        if not pending:
            continue
        if present is None:
            present = items_in_broker(client, queue)  # read once per pass, only when needed
        for task in pending:
            if (task.batch_id, task.index) not in present:
                log.warning("batch item lost its broker message; enqueued again",
                            extra={"batch_id": task.batch_id, "index": task.index})
                enqueue(task)
                requeued.append(task)
        try:
            os.utime(tasks_file)  # look at this batch again only after another stale_after_s
        except OSError:
            pass
    return requeued


def sweep_once_locked(upload_dir: Path, client, queue: str, enqueue: Callable[[ItemTask], None], *,
                      stale_after_s: float, lock_s: float) -> list[ItemTask]:
    """sweep() in at most one gateway process per lock period."""
    if not client.set(LOCK_KEY, str(os.getpid()), nx=True, ex=max(1, int(lock_s))):
        return []
    return sweep(upload_dir, client, queue, enqueue, stale_after_s=stale_after_s)


async def run_forever(settings, celery) -> None:
    """The sweeper loop of a gateway process (started by the app when batches go to Celery on a
    Redis broker); every pass runs in a thread with its own synchronous Redis client."""
    from hemovision_gateway.batches.worker import QUEUE, enqueue  # importing it builds the Celery app

    interval = settings.batch_sweep_interval_s
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=10, socket_connect_timeout=5)
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(
                    sweep_once_locked, Path(settings.upload_dir), client, QUEUE, lambda t: enqueue(celery, t),
                    stale_after_s=2 * settings.batch_visibility_timeout_s, lock_s=interval)
            except Exception:  # noqa: BLE001 - a failed pass is retried on the next tick
                log.warning("batch sweep failed", exc_info=True)
    finally:
        client.close()
