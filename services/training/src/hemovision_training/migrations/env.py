"""Alembic environment of the training service: every table, and the version table, in schema `training`.
Run by `python -m hemovision_training migrate`."""

from hemovision_database.alembic_env import run_alembic
from hemovision_training.tables import SCHEMA, metadata

run_alembic(metadata, SCHEMA)
