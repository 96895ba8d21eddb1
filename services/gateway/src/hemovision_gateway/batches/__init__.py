"""Batch predictions: staging uploads on disk (storage), predicting one item (processing),
the Celery worker that runs items (worker) and the sweeper that re-enqueues lost ones (sweeper)."""
