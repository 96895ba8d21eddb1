"""Request coalescing: the Coalescer itself, and concurrent uploads sharing one Explain call."""

from __future__ import annotations

import asyncio

import pytest
from gateway_fakes import auth, png_bytes

from hemovision_gateway.coalescing import Coalescer


class Downstream:
    def __init__(self) -> None:
        self.groups: list[tuple[object, list[int]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False

    async def __call__(self, key, items):
        self.groups.append((key, list(items)))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("downstream broke")
        return [(key, item * 10) for item in items]


async def test_alone_goes_at_once_and_latecomers_leave_together():
    down = Downstream()
    c = Coalescer(down, max_items=3)
    assert await c.submit("k", 1) == ("k", 10)  # nothing in flight: no waiting for company
    down.release.clear()
    first = asyncio.create_task(c.submit("k", 2))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(c.submit("k", i)) for i in range(3, 8)]
    await asyncio.sleep(0.01)
    assert [items for _, items in down.groups] == [[1], [2]]  # the others wait for the running group
    down.release.set()
    assert await first == ("k", 20)
    assert [await t for t in rest] == [("k", i * 10) for i in range(3, 8)]
    assert [items for _, items in down.groups] == [[1], [2], [3, 4, 5], [6, 7]]  # at most max_items
    assert (c.groups, c.items) == (4, 7)


async def test_callers_resumed_together_leave_together():
    """The answers of one upstream group resume their callers in one loop turn; those reaching an
    idle stage go downstream as one group, not the first alone and the rest one call later."""
    down = Downstream()
    c = Coalescer(down, max_items=8)
    upstream = asyncio.get_running_loop().create_future()

    async def caller(i):
        await upstream  # like the callers of one Explain group, all woken by its answer
        return await c.submit("k", i)

    tasks = [asyncio.create_task(caller(i)) for i in range(4)]
    await asyncio.sleep(0)
    upstream.set_result(None)
    assert await asyncio.gather(*tasks) == [("k", i * 10) for i in range(4)]
    assert [items for _, items in down.groups] == [[0, 1, 2, 3]]


async def test_keys_never_share_a_call():
    down = Downstream()
    down.release.clear()
    c = Coalescer(down, max_items=8)
    tasks = [asyncio.create_task(c.submit(key, i)) for i, key in enumerate("ababab")]
    await asyncio.sleep(0.01)
    down.release.set()
    results = await asyncio.gather(*tasks)
    assert results == [(key, i * 10) for i, key in enumerate("ababab")]
    for key, items in down.groups:
        assert all("ababab"[i] == key for i in items)


async def test_a_failed_group_fails_its_callers_only():
    down = Downstream()
    down.release.clear()
    c = Coalescer(down, max_items=8)
    first = asyncio.create_task(c.submit("k", 1))
    await asyncio.sleep(0)
    down.fail_next = True
    later = [asyncio.create_task(c.submit("k", i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    down.release.set()
    with pytest.raises(RuntimeError, match="downstream broke"):
        await first
    assert [await t for t in later] == [("k", 20), ("k", 30)]


async def test_callers_that_gave_up_are_not_sent():
    down = Downstream()
    down.release.clear()
    c = Coalescer(down, max_items=8)
    first = asyncio.create_task(c.submit("k", 1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(c.submit("k", 2))
    kept = asyncio.create_task(c.submit("k", 3))
    await asyncio.sleep(0)
    gone.cancel()
    down.release.set()
    await first
    assert await kept == ("k", 30)
    assert [items for _, items in down.groups] == [[1], [3]]


async def test_groups_stay_under_max_weight_and_a_heavy_item_goes_alone():
    down = Downstream()
    down.release.clear()
    c = Coalescer(down, max_items=8, weight=lambda item: item, max_weight=10)
    first = asyncio.create_task(c.submit("k", 1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(c.submit("k", i)) for i in (4, 5, 2, 30, 3)]
    await asyncio.sleep(0.01)
    down.release.set()
    await first
    await asyncio.gather(*rest)
    assert [items for _, items in down.groups] == [[1], [4, 5], [2], [30], [3]]


async def test_an_exception_as_a_result_fails_that_caller_only():
    async def run_group(key, items):
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    c = Coalescer(run_group, max_items=8)
    results = await asyncio.gather(c.submit("k", 1), c.submit("k", -2), c.submit("k", 3), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -2"


def test_bounds_are_checked():
    with pytest.raises(ValueError):
        Coalescer(Downstream(), max_items=0)


async def test_concurrent_uploads_share_analyze_calls_and_get_their_own_answers(app, client, world):
    from hemovision_gateway.pipeline import Coalescing

    ctx = app.state.ctx  # one group in flight per stage: what waits meanwhile must be grouped
    ctx.coalescing = Coalescing.create(ctx.clients, ctx.settings.model_copy(
        update={"coalesce_analyze_in_flight": 1, "coalesce_record_in_flight": 1}))
    _, token = world.user("lab_user")
    _, other = world.user("lab_user")
    world.explain_delay = 0.15
    colours = [(i * 40, 255 - i * 30, 90) for i in range(6)]

    async def upload(tok, colour):
        r = await client.post("/api/v1/predictions", headers=auth(tok),
                              files={"file": ("cell.png", png_bytes(color=colour), "image/png")})
        assert r.status_code == 201, r.text
        return r.json()

    answers = await asyncio.gather(*[upload(token, c) for c in colours], *[upload(other, c) for c in colours[:3]])
    # each answer is its own image's (the fake reports the image's mean pixel as ood_score)
    for body, colour in zip(answers, colours + colours[:3], strict=True):
        assert body["ood_score"] == pytest.approx(sum(colour) / 3 / 255, abs=1e-4)
    sizes = [n for _, n in world.explain_calls]
    assert sum(sizes) == 9 and max(sizes) > 1 and len(sizes) < 9
    # one caller's token is never used for another's images: per user, the counts add up
    per_user = {}
    for user, n in world.explain_calls:
        per_user[user] = per_user.get(user, 0) + n
    assert sorted(per_user.values()) == [3, 6]
    assert world.record_group_sizes and max(world.record_group_sizes) > 1  # records were grouped too
    # the stored records are each upload's own
    for body in answers[:6]:
        got = await client.get(f"/api/v1/predictions/{body['id']}", headers=auth(token))
        assert got.status_code == 200 and got.json()["ood_score"] == body["ood_score"]


async def test_one_failed_record_in_a_group_fails_that_upload_only(app, world):
    from hemovision_gateway.pipeline import RecordCoalescer
    from hemovision.history.v1 import history_pb2

    ctx = app.state.ctx
    recorder = RecordCoalescer(ctx.clients, ctx.settings, max_items=8)
    _, token = world.user("lab_user")
    world.explain_delay = 0
    labels = ["neutrophil", "reject-me", "platelet", "monocyte"]
    requests = [history_pb2.RecordPredictionRequest(prediction=history_pb2.Prediction(label=label)) for label in labels]
    outcomes = await asyncio.gather(*[recorder.record(token, r) for r in requests], return_exceptions=True)
    assert [getattr(o, "label", None) for o in outcomes] == ["neutrophil", None, "platelet", "monocyte"]
    error = outcomes[1]
    assert (error.status, error.code) == (422, "invalid_argument")
    assert "rejected on purpose" in error.message
    assert world.record_group_sizes == [4]  # submitted in one loop turn: one RecordPredictions call


async def test_a_bad_image_in_a_shared_analyze_call_fails_alone(app, client, world):
    from hemovision_gateway.pipeline import Coalescing

    ctx = app.state.ctx
    ctx.coalescing = Coalescing.create(ctx.clients, ctx.settings)
    _, token = world.user("lab_user")
    world.explain_delay = 0.1
    good = png_bytes()
    payloads = [good, good, good[:40], good, good]  # the third is cut short

    async def upload(data):
        return await client.post("/api/v1/predictions", headers=auth(token),
                                 files={"file": ("cell.png", data, "image/png")})

    first = asyncio.create_task(upload(good))  # occupies the lanes, so the rest queue up together
    await asyncio.sleep(0.02)
    answers = await asyncio.gather(*[upload(p) for p in payloads])
    assert (await first).status_code == 201
    assert [a.status_code for a in answers] == [201, 201, 422, 201, 201]
    assert answers[2].json()["error"]["code"] == "truncated"
    assert max(n for _, n in world.explain_calls) > 1  # the good ones of the group went together
