"""Request coalescing: concurrent calls with the same key become one downstream call.

Every gRPC hop costs a fixed amount of CPU on each side (framing, token check, a thread hop),
more than the work itself for one 64x64 cell (figures: docs/decisions.md #10, docs/serving.md
"Benchmarks"). Under concurrency the pipeline therefore groups
what it can: a call is dispatched on the next event-loop turn when fewer than `max_in_flight`
groups of its key are running (no added latency at concurrency 1, like TF Serving's batching with
an idle batch thread; the one turn lets callers resumed together leave together); calls that
arrive meanwhile wait and leave together, at most `max_items` at a time, as soon as a running
group returns. Keys keep apart what must not share a call: the gateway's pipeline keys both of
its stages (AnalyzeImages, RecordPredictions) by the caller's token, so a call never carries one
user's images under another's identity.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Lane(Generic[Item, Result]):
    __slots__ = ("pending", "in_flight", "dispatch_scheduled")

    def __init__(self) -> None:
        # (item, its caller's future, its caller's context: a group runs in its first caller's, so the
        # downstream call is part of that request's trace)
        self.pending: list[tuple[Item, asyncio.Future[Result], contextvars.Context]] = []
        self.in_flight = 0
        self.dispatch_scheduled = False


class Coalescer(Generic[Item, Result]):
    """`run_group(key, items)` returns one result per item, in order; a result that is an exception
    is raised to that item's caller alone (per-item failures); if run_group itself raises, every
    caller of that group gets the exception."""

    def __init__(
        self,
        run_group: Callable[[Hashable, list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_items: int,
        max_in_flight: int = 1,
        weight: Callable[[Item], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        if max_items < 1 or max_in_flight < 1:
            raise ValueError("max_items and max_in_flight must be >= 1")
        self._run_group = run_group
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        # Optional second bound, e.g. bytes per call under the gRPC message limit; a single item
        # heavier than max_weight still goes, alone.
        self._weight = weight
        self.max_weight = max_weight
        self._lanes: dict[Hashable, _Lane[Item, Result]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.groups = 0  # dispatched groups, for tests and metrics
        self.items = 0

    async def submit(self, key: Hashable, item: Item) -> Result:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        lane.pending.append((item, future, contextvars.copy_context()))
        if lane.in_flight < self.max_in_flight and not lane.dispatch_scheduled:
            # Dispatched on the next loop turn, not at once: callers resumed together (the answers of
            # one upstream group) reach this stage in the same turn and leave as one group, instead of
            # the first alone and the rest one call later (REST uploads at c32: 140-173 -> 177-195 a
            # second in A/B pairs). At concurrency 1 this costs one loop turn.
            lane.dispatch_scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_if_free, key, lane)
        return await future

    def _dispatch_if_free(self, key: Hashable, lane: _Lane[Item, Result]) -> None:
        lane.dispatch_scheduled = False
        if lane.in_flight < self.max_in_flight:
            self._dispatch(key, lane)

    def _dispatch(self, key: Hashable, lane: _Lane[Item, Result]) -> None:
        # callers that gave up (client went away) are not sent downstream
        lane.pending = [p for p in lane.pending if not p[1].done()]
        if not lane.pending:
            if lane.in_flight == 0 and not lane.dispatch_scheduled and self._lanes.get(key) is lane:
                del self._lanes[key]
            return
        n = min(self.max_items, len(lane.pending))
        if self._weight is not None and self.max_weight > 0:
            total, n = 0, 0
            for item, _, _ in lane.pending[: self.max_items]:
                total += self._weight(item)
                if n and total > self.max_weight:
                    break
                n += 1
        group, lane.pending = lane.pending[:n], lane.pending[n:]
        lane.in_flight += 1
        self.groups += 1
        self.items += len(group)
        task = asyncio.get_running_loop().create_task(self._run(key, lane, group), context=group[0][2])
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, lane: _Lane[Item, Result],
                   group: list[tuple[Item, asyncio.Future, contextvars.Context]]) -> None:
        try:
            results = await self._run_group(key, [item for item, _, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"a group of {len(group)} got {len(results)} results")
        except asyncio.CancelledError:
            for _, future, _ in group:
                future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future, _), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            lane.in_flight -= 1
            self._dispatch(key, lane)
