"""The body of every service's Alembic env.py: tables and version table in the service's schema.

    # services/<svc>/src/hemovision_<svc>/migrations/env.py
    from hemovision_database.alembic_env import run_alembic
    from hemovision_<svc>.tables import SCHEMA, metadata
    run_alembic(metadata, SCHEMA)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, create_engine, pool, text


def run_alembic(metadata: MetaData, schema: str) -> None:
    """Runs the migrations Alembic asked for (online or offline) within `schema` only."""
    config = context.config
    version_table_schema = config.attributes.get("version_table_schema", schema)

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        # Autogenerate compares only our own schema, never another service's tables.
        return name == schema if type_ == "schema" else True

    options = dict(
        target_metadata=metadata,
        version_table_schema=version_table_schema,
        include_schemas=True,
        include_name=include_name,
    )
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: sqlalchemy.url is not set (run_migrations sets it)")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.commit()
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
