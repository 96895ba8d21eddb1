"""History answering UNAVAILABLE (its PostgreSQL restarting, bench/reliability): the gateway sends
those records again with the same idempotency keys -- a record whose commit was stored but not
confirmed comes back as that record, not a second one -- and nothing else is retried."""

from __future__ import annotations

import uuid

import grpc
import pytest

from hemovision.history.v1 import history_pb2

from hemovision_gateway import Settings, pipeline
from hemovision_gateway.errors import ApiError


def _rpc_error(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), message)


class FlakyHistory:
    """history.RecordPrediction(s) behind the gateway's Clients: `script` says, call by call, what
    goes wrong ("down" = the whole call UNAVAILABLE, {key: code} = those items fail); a record is
    kept per idempotency key like history's unique constraint does."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.calls: list[list[str]] = []
        self.stored: dict[str, history_pb2.Prediction] = {}

    def _store(self, item) -> history_pb2.Prediction:
        if item.idempotency_key not in self.stored:
            self.stored[item.idempotency_key] = history_pb2.Prediction(id=str(uuid.uuid4()), label=item.prediction.label)
        return self.stored[item.idempotency_key]

    async def RecordPredictions(self, request, metadata=None, timeout=None):
        keys = [i.idempotency_key for i in request.items]
        self.calls.append(keys)
        step = self.script.pop(0) if self.script else {}
        if step == "down":
            for item in request.items:  # a COMMIT whose answer was lost: stored, yet UNAVAILABLE
                self._store(item)
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE, "the history database is unavailable right now; try again")
        response = history_pb2.RecordPredictionsResponse()
        for item in request.items:
            code = step.get(item.idempotency_key)
            if code is not None:
                response.results.add(error=history_pb2.ItemError(code=code.value[0], message=code.name.lower()))
            else:
                response.results.add(prediction=self._store(item))
        return response

    async def RecordPrediction(self, request, metadata=None, timeout=None):
        answer = await self.RecordPredictions(history_pb2.RecordPredictionsRequest(items=[request]))
        r = answer.results[0]
        if r.WhichOneof("outcome") == "error":
            raise _rpc_error(next(c for c in grpc.StatusCode if c.value[0] == r.error.code), r.error.message)
        return r.prediction


class FakeClients:
    def __init__(self, history: FlakyHistory) -> None:
        self.history = history


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(pipeline, "RECORD_RETRY_DELAYS_S", (0.01, 0.01, 0.01))


def _requests(n: int) -> list[history_pb2.RecordPredictionRequest]:
    return [history_pb2.RecordPredictionRequest(idempotency_key=f"k{i}", prediction=history_pb2.Prediction(label="x"))
            for i in range(n)]


async def _run(history: FlakyHistory, requests):
    coalescer = pipeline.RecordCoalescer(FakeClients(history), Settings(), max_items=32)
    return await coalescer._run_group("token", requests)


async def test_unavailable_call_is_sent_again_with_the_same_keys_and_stores_once():
    history = FlakyHistory(["down", "down"])
    out = await _run(history, _requests(3))
    assert history.calls == [["k0", "k1", "k2"]] * 3
    assert all(isinstance(o, history_pb2.Prediction) for o in out)
    assert [o.id for o in out] == [history.stored[f"k{i}"].id for i in range(3)]  # the first records, once


async def test_only_unavailable_items_are_retried():
    history = FlakyHistory([{"k1": grpc.StatusCode.UNAVAILABLE, "k2": grpc.StatusCode.INVALID_ARGUMENT}])
    out = await _run(history, _requests(3))
    assert history.calls == [["k0", "k1", "k2"], ["k1"]]
    assert isinstance(out[0], history_pb2.Prediction) and isinstance(out[1], history_pb2.Prediction)
    assert isinstance(out[2], ApiError) and out[2].status == 422


async def test_internal_is_final_at_once():
    history = FlakyHistory([{"k0": grpc.StatusCode.INTERNAL}])
    out = await _run(history, _requests(1))
    assert history.calls == [["k0"]]
    assert isinstance(out[0], ApiError) and out[0].status == 502


async def test_still_unavailable_after_the_retries_is_503_with_retry_after():
    history = FlakyHistory(["down"] * 10)
    out = await _run(history, _requests(2))
    assert len(history.calls) == 1 + len(pipeline.RECORD_RETRY_DELAYS_S)
    assert all(isinstance(o, ApiError) and o.status == 503 and o.headers.get("Retry-After") for o in out)
