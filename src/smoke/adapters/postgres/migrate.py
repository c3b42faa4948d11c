"""Apply the migrations and seed the catalog and the smoke customer: ``smoke migrate [--seed]`` and ``smoke up``."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from smoke.domain.catalog import SEEDED_MANIFESTS, SEEDED_REGIONS, SEEDED_TIERS
from smoke.domain.models import CustomerScope

__all__ = ("migrate", "seed")

MIGRATIONS = Path(__file__).parent / "migrations"


def _sync_url(url: str) -> str:
    """The psycopg (synchronous) form of a ``postgresql://`` URL."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = _sync_url(url)
    return config


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest revision. Blocking: call it from a thread in async code."""
    command.upgrade(alembic_config(url), "head")


def seed(url: str, scope: CustomerScope) -> None:
    """Insert the smoke customer, tenant, subscription and the catalog; idempotent. Blocking."""
    engine = create_engine(_sync_url(url), poolclass=pool.NullPool)
    with engine.begin() as conn:
        _insert(conn, "customers", [{"id": scope.customer_id, "name": "smoke"}])
        _insert(conn, "tenants", [{"id": scope.tenant_id, "customer_id": scope.customer_id, "name": "smoke"}])
        _insert(conn, "subscriptions", [{"id": scope.subscription_id, "tenant_id": scope.tenant_id, "plan": "smoke"}])
        _insert(conn, "regions", [{"id": k, "location": v} for k, v in SEEDED_REGIONS.items()])
        _insert(conn, "tiers", [{"id": k, "server_type": v} for k, v in SEEDED_TIERS.items()])
        _insert(conn, "manifests", [{"id": k, "image": v} for k, v in SEEDED_MANIFESTS.items()])
    engine.dispose()


def _insert(conn: object, table: str, rows: list[dict[str, str | UUID]]) -> None:
    columns = list(rows[0])
    statement = text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "  # noqa: S608
        "ON CONFLICT (id) DO NOTHING"
    )
    conn.execute(statement, rows)  # type: ignore[attr-defined]
