"""The migrations: they build exactly the schema of the models, and walk down and up again."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from smoke.adapters.postgres.migrate import alembic_config, migrate
from smoke.adapters.postgres.tables import metadata


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = f"smoke_migrations_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, sep, query = database_url.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}{sep}{query}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_migrations_build_the_schema_of_the_models(empty_database: str) -> None:
    migrate(empty_database)

    engine = create_engine("postgresql+psycopg://" + empty_database.split("://", 1)[1], poolclass=pool.NullPool)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()

    assert differences == []


def test_the_migrations_walk_down_to_nothing_and_up_again(empty_database: str) -> None:
    migrate(empty_database)

    command.downgrade(alembic_config(empty_database), "base")
    migrate(empty_database)
