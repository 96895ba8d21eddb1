"""Server-side batching with TF Serving's knobs and a bounded queue.

Concurrent Predict calls for the same (version, signature, input shape) are merged
along axis 0 into batches of at most `max_batch_size` rows. A batch is dispatched when
it is full, when its oldest request has waited `batch_timeout_micros`, or (dispatch_when_idle)
as soon as a batch thread is idle; at most
`num_batch_threads` batches run at once. At most `max_enqueued_batches` x
`max_batch_size` rows may wait; beyond that a call fails at once with QueueFull
(RESOURCE_EXHAUSTED) instead of growing the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hemovision_model_server.loader import LoadedVersion


class QueueFull(Exception):
    """The batching queue is at its bound."""


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float


@dataclass
class _Queue:
    servable: LoadedVersion
    signature: str
    items: deque = field(default_factory=deque)
    rows: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


@dataclass
class BatchingOptions:
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 8
    # Batches are zero-padded up to the next of these sizes (TF Serving's allowed_batch_sizes),
    # so the model only ever sees a few shapes, all warmed up at load. () = no padding.
    allowed_batch_sizes: tuple[int, ...] = ()
    # Dispatch at once when a batch thread is idle instead of waiting batch_timeout for the batch
    # to fill: no added latency at low load; under load batches form while the threads are busy.
    dispatch_when_idle: bool = True

    def padded_size(self, rows: int) -> int:
        for size in sorted(self.allowed_batch_sizes):
            if size >= rows:
                return size
        return rows


class BatchScheduler:
    def __init__(
        self,
        options: BatchingOptions,
        *,
        on_batch: Callable[[LoadedVersion, str, int, float], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self.options = options
        self.enabled = enabled
        self.executor = ThreadPoolExecutor(max(1, options.num_batch_threads), thread_name_prefix="batch")
        self._slots = asyncio.Semaphore(max(1, options.num_batch_threads))
        self._queues: dict[tuple, _Queue] = {}
        self._queued_rows = 0
        self._busy = 0  # batches executing
        self._on_batch = on_batch
        self._closed = False

    @property
    def max_queued_rows(self) -> int:
        return self.options.max_enqueued_batches * self.options.max_batch_size

    async def run(self, servable: LoadedVersion, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _batch_rows(inputs)
        loop = asyncio.get_running_loop()
        if not self.enabled or rows is None or rows > self.options.max_batch_size:
            if self._queued_rows + (rows or 1) > self.max_queued_rows:
                raise QueueFull("batching queue full")
            async with self._slots:
                if self._on_batch:
                    self._on_batch(servable, signature, rows or 1, 0.0)
                return await loop.run_in_executor(self.executor, servable.run, signature, inputs)
        if self._queued_rows + rows > self.max_queued_rows:
            raise QueueFull(
                f"batching queue full ({self._queued_rows} rows waiting, bound {self.max_queued_rows})"
            )
        key = (id(servable), signature, tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items())))
        queue = self._queues.get(key)
        if queue is None or queue.task is None or queue.task.done():
            queue = _Queue(servable, signature)
            self._queues[key] = queue
            queue.task = asyncio.create_task(self._collect(key, queue))
        future = loop.create_future()
        queue.items.append(_Pending(inputs, rows, future, time.perf_counter()))
        queue.rows += rows
        self._queued_rows += rows
        queue.wakeup.set()
        return await future

    async def _collect(self, key: tuple, queue: _Queue) -> None:
        timeout = self.options.batch_timeout_micros / 1e6
        idle_rounds = 0
        try:
            while not self._closed:
                if not queue.items:
                    queue.wakeup.clear()
                    try:
                        await asyncio.wait_for(queue.wakeup.wait(), timeout=5.0)
                        idle_rounds = 0
                    except TimeoutError:
                        idle_rounds += 1
                        if not queue.items and idle_rounds >= 2:
                            return  # idle queue: the next request creates a new collector
                    continue
                oldest = queue.items[0].enqueued
                while queue.rows < self.options.max_batch_size:
                    if self.options.dispatch_when_idle and self._busy < self.options.num_batch_threads:
                        break  # a batch thread is idle: waiting would only add latency
                    remaining = oldest + timeout - time.perf_counter()
                    if remaining <= 0:
                        break
                    queue.wakeup.clear()
                    try:
                        await asyncio.wait_for(queue.wakeup.wait(), timeout=remaining)
                    except TimeoutError:
                        break
                await self._slots.acquire()
                self._busy += 1
                batch: list[_Pending] = []
                rows = 0
                while queue.items and rows + queue.items[0].rows <= self.options.max_batch_size:
                    item = queue.items.popleft()
                    batch.append(item)
                    rows += item.rows
                queue.rows -= rows
                self._queued_rows -= rows
                asyncio.create_task(self._execute(queue, batch, rows))
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            for item in queue.items:
                self._queued_rows -= item.rows
                if not item.future.done():
                    item.future.set_exception(QueueFull("batching queue closed"))
            queue.items.clear()

    async def _execute(self, queue: _Queue, batch: list[_Pending], rows: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            now = time.perf_counter()
            if self._on_batch:
                self._on_batch(queue.servable, queue.signature, rows, max(now - p.enqueued for p in batch))
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {k: np.concatenate([p.inputs[k] for p in batch], axis=0) for k in batch[0].inputs}
            padded = self.options.padded_size(rows)
            if padded > rows:
                merged = {
                    k: np.concatenate([v, np.zeros((padded - rows, *v.shape[1:]), dtype=v.dtype)], axis=0)
                    for k, v in merged.items()
                }
            try:
                outputs = await loop.run_in_executor(self.executor, queue.servable.run, queue.signature, merged)
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                return
            start = 0
            for p in batch:
                part = {k: _slice(v, start, p.rows, padded) for k, v in outputs.items()}
                start += p.rows
                if not p.future.done():
                    p.future.set_result(part)
        finally:
            self._busy -= 1
            self._slots.release()

    def close_servable(self, servable: LoadedVersion) -> None:
        for queue in list(self._queues.values()):
            if queue.servable is servable and queue.task is not None:
                queue.task.cancel()

    async def close(self) -> None:
        self._closed = True
        for queue in list(self._queues.values()):
            if queue.task is not None:
                queue.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _batch_rows(inputs: dict[str, np.ndarray]) -> int | None:
    sizes = {v.shape[0] if v.ndim > 0 else None for v in inputs.values()}
    if len(sizes) != 1:
        return None
    (size,) = sizes
    return size if size else None


def _slice(value: Any, start: int, rows: int, total: int) -> Any:
    if isinstance(value, np.ndarray) and value.ndim > 0 and value.shape[0] == total:
        return value[start : start + rows]
    return value
