"""Alembic environment of the auth service: every table lives in schema `auth`,
and so does the version table. Run by `python -m hemovision_auth migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from hemovision_auth.tables import SCHEMA, metadata

config = context.config
target_metadata = metadata
version_table_schema = config.attributes.get("version_table_schema", SCHEMA)


def _include_name(name, type_, parent_names):  # noqa: ANN001
    if type_ == "schema":
        return name == SCHEMA
    return True


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        version_table_schema=version_table_schema,
        include_schemas=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=version_table_schema,
            include_schemas=True,
            include_name=_include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
