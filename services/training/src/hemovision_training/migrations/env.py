"""Alembic environment of the training service; every table lives in schema `training`.

Run through `python -m hemovision_training migrate` (hemovision_database.run_migrations),
which passes the URL and the version table schema in the config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from hemovision_training.tables import SCHEMA, metadata

config = context.config
version_schema = config.attributes.get("version_table_schema", SCHEMA)


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=version_schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table_schema=version_schema,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
