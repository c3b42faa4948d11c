"""Apply the migrations and seed the catalog and the smoke customer: ``smoke migrate [--seed]`` and ``smoke up``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, pool, text

from smoke.domain.catalog import SEEDED_CATALOG, CatalogSpec
from smoke.domain.models import CustomerScope, Manifest

__all__ = ("migrate", "seed", "seed_customer")

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


def seed(url: str, scope: CustomerScope, catalog: CatalogSpec = SEEDED_CATALOG) -> None:
    """``seed_customer`` and ``store_catalog`` in one transaction: ``smoke migrate --seed`` and ``smoke up``."""
    engine = create_engine(_sync_url(url), poolclass=pool.NullPool)
    with engine.begin() as conn:
        _insert_customer(conn, scope)
        _store_catalog(conn, catalog)
    engine.dispose()


def seed_customer(url: str, scope: CustomerScope) -> None:
    """Insert the customer, tenant and subscription of ``scope``; idempotent. Blocking."""
    engine = create_engine(_sync_url(url), poolclass=pool.NullPool)
    with engine.begin() as conn:
        _insert_customer(conn, scope)
    engine.dispose()


def _insert_customer(conn: Connection, scope: CustomerScope) -> None:
    _upsert(conn, "customers", [{"id": scope.customer_id, "name": "smoke"}])
    _upsert(conn, "tenants", [{"id": scope.tenant_id, "customer_id": scope.customer_id, "name": "smoke"}])
    _upsert(conn, "subscriptions", [{"id": scope.subscription_id, "tenant_id": scope.tenant_id, "plan": "smoke"}])


def _store_catalog(conn: Connection, catalog: CatalogSpec) -> None:
    """Upsert every entry: one edited in the configuration is updated, one that is back is no longer retired, and
    one no longer in it is retired (refused for new requests, kept for the instances that use it)."""
    _replace_entries(conn, "regions", [{"id": k, "location": v} for k, v in catalog.regions.items()])
    _replace_entries(conn, "tiers", [{"id": k, "server_type": v} for k, v in catalog.tiers.items()])
    _replace_entries(conn, "manifests", [_manifest_row(m) for m in catalog.manifests.values()])


def _manifest_row(manifest: Manifest) -> dict[str, object]:
    llm = None if manifest.llm is None else json.dumps(dataclasses.asdict(manifest.llm))
    return {
        "id": manifest.id,
        "image": manifest.image,
        "agent": str(manifest.agent),
        "agent_port": manifest.agent_port,
        "user_data": manifest.user_data,
        "llm": llm,
    }


def _replace_entries(conn: Connection, table: str, rows: list[dict[str, object]]) -> None:
    _upsert(conn, table, rows, update=True)
    ids = [row["id"] for row in rows]
    conn.execute(
        text(f"UPDATE {table} SET retired_at = now() WHERE retired_at IS NULL AND NOT (id = ANY(:ids))"),  # noqa: S608
        {"ids": ids},
    )


def _upsert(conn: Connection, table: str, rows: list[dict[str, object]], *, update: bool = False) -> None:
    """Insert ``rows``; with ``update``, an existing row takes the new values and is no longer retired."""
    if not rows:
        return
    columns = list(rows[0])
    placeholders = ", ".join(f"CAST(:{c} AS jsonb)" if c == "llm" else f":{c}" for c in columns)
    changes = ", ".join([*(f"{c} = excluded.{c}" for c in columns if c != "id"), "retired_at = NULL"])
    conflict = f"DO UPDATE SET {changes}" if update else "DO NOTHING"
    statement = text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) ON CONFLICT (id) {conflict}"  # noqa: S608
    )
    conn.execute(statement, rows)
