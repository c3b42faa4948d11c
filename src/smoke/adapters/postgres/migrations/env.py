"""Alembic environment: migrations run on a synchronous psycopg connection, in a thread of their own if need be."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from smoke.adapters.postgres.tables import metadata

url: str = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url") or ""


def run_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True, version_table="alembic_version")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
