"""Alembic environment of the history service: every table, and the version table, in schema `history`.
Run by `python -m hemovision_history migrate`."""

from hemovision_database.alembic_env import run_alembic
from hemovision_history.tables import SCHEMA, metadata

run_alembic(metadata, SCHEMA)
