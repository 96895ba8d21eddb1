"""Keyset pagination is exact: for any rows (with ties on every sort column but id) and any
page size, walking the cursors yields every row once, in the documented order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hemovision_database import create_db_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from history_factories import probabilities_for

from hemovision_history import domain
from hemovision_history.repository import PredictionRepository
from hemovision_history.tables import predictions

BASE = datetime(2026, 1, 1, tzinfo=UTC)

rows_strategy = st.lists(
    st.tuples(
        st.booleans(),  # needs_review
        st.sampled_from([0.4, 0.6, 0.6, 0.9]),  # confidence: ties likely
        st.integers(min_value=0, max_value=2),  # created_at: ties likely
    ),
    min_size=0,
    max_size=12,
)


@pytest.fixture(scope="module")
def repo(migrated_url):
    engine = create_db_engine(migrated_url, pool_size=1)
    yield PredictionRepository(engine)
    engine.dispose()


def _insert(repo: PredictionRepository, org: str, rows) -> list[dict]:  # noqa: ANN001
    stored = []
    for needs_review, confidence, minute in rows:
        new = domain.NewPrediction(
            label="monocyte", confidence=confidence, probabilities=probabilities_for("monocyte", confidence),
            needs_review=needs_review, review_reasons=[], model_name="m", model_version=1, temperature=1.0,
            ood_score=0.0, timings_ms={}, image_sha256="", filename="", sample_id="", slide_id="", note="",
            batch_id=None,
        )
        pid = str(uuid.uuid4())
        repo.insert_predictions([dict(prediction_id=pid, organization_id=org, user_id="u", idempotency_key=None,
                                      new=new, image_key=None, heatmap_key=None)])
        created = BASE + timedelta(minutes=minute)
        with repo.engine.begin() as conn:
            conn.execute(update(predictions).where(predictions.c.id == pid).values(created_at=created))
        stored.append({"id": pid, "needs_review": needs_review, "confidence": confidence, "created_at": created})
    return stored


def _walk(repo: PredictionRepository, org: str, limit: int, review_queue: bool) -> list[str]:
    seen, cursor = [], ""
    for _ in range(100):
        page = repo.list_predictions(organization_id=org, filter=domain.PredictionFilter(), limit=limit,
                                     cursor=cursor, review_queue=review_queue)
        assert len(page.items) <= limit
        seen += [p.id for p in page.items]
        cursor = page.next_cursor
        if not cursor:
            return seen
    raise AssertionError("pagination did not end")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, limit=st.integers(min_value=1, max_value=5))
def test_pages_cover_every_row_once_in_order(repo, rows, limit):
    org = str(uuid.uuid4())
    stored = _insert(repo, org, rows)
    newest = sorted(stored, key=lambda r: (r["created_at"], uuid.UUID(r["id"])), reverse=True)
    assert _walk(repo, org, limit, review_queue=False) == [r["id"] for r in newest]
    queue = sorted(stored, key=lambda r: (not r["needs_review"], r["confidence"], r["created_at"], uuid.UUID(r["id"])))
    assert _walk(repo, org, limit, review_queue=True) == [r["id"] for r in queue]
