"""The rollout statistics contract: buckets, percentiles and the hash read back."""

from __future__ import annotations

import pytest

from hemovision_contracts import rollouts as r


def test_buckets_and_percentiles():
    assert r.latency_bucket(0.2) == 0 and r.latency_bucket(1) == 0 and r.latency_bucket(1.01) == 1
    assert r.latency_bucket(10**6) == len(r.LATENCY_BOUNDS_MS)
    counts = [0] * (len(r.LATENCY_BOUNDS_MS) + 1)
    assert r.percentile_ms(counts, 0.5) is None
    counts[r.latency_bucket(8)] = 100  # all in (7.5, 10]
    assert 7.5 < r.percentile_ms(counts, 0.5) <= 10 and r.percentile_ms(counts, 0.5) == pytest.approx(8.75)
    counts[r.latency_bucket(40)] = 100  # half in (30, 50]
    assert 30 < r.percentile_ms(counts, 0.95) <= 50
    counts[-1] = 1000  # the open bucket answers its lower bound
    assert r.percentile_ms(counts, 0.99) == r.LATENCY_BOUNDS_MS[-1]


def test_read_stats_from_a_redis_hash():
    raw = {b"requests:baseline": b"7", b"requests:candidate": b"3", b"agree": b"2", b"disagree": b"1",
           r.latency_field("candidate", 4).encode(): b"3", b"shadow_dropped": b"5"}
    st = r.read_stats(raw)
    assert st["requests"] == {"baseline": 7, "candidate": 3}
    assert (st["agree"], st["disagree"], st["shadow_dropped"], st["shadow_failed"]) == (2, 1, 5, 0)
    assert st["latency"]["candidate"][4] == 3 and sum(st["latency"]["baseline"]) == 0
    assert r.rollout_stats_key("abc") == "hv:rollout:abc:stats"
