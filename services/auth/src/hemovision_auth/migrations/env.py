"""Alembic environment of the auth service: every table, and the version table, in schema `auth`.
Run by `python -m hemovision_auth migrate`."""

from hemovision_database.alembic_env import run_alembic
from hemovision_auth.tables import SCHEMA, metadata

run_alembic(metadata, SCHEMA)
