"""PostgreSQL restarting under load: the API answers 503 (never 500) meanwhile, recovers by itself, and no
acknowledged provision is lost.

The database is an embedded PostgreSQL of this test's own (pgserver), so it can be stopped and started without
touching the machine's server: ``pg_ctl stop -m immediate`` (a crash: every backend killed, no checkpoint), a few
seconds without a database, then ``pg_ctl start`` (crash recovery). The API and an in-process worker run on it
throughout; nothing is restarted but PostgreSQL.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from smoke.adapters.postgres.migrate import migrate, seed
from smoke.settings import Settings
from tests.reliability import figures
from tests.reliability.stack import (
    SMOKE,
    Stack,
    audit,
    provision_body,
    served_stack,
    stack_settings,
    until,
    wait_for_status,
)

pgserver = pytest.importorskip("pgserver", reason="pgserver (embedded PostgreSQL) has no wheel for this Python")

BEFORE, OUTAGE, AFTER = 1.5, 3.0, 3.0
"""Seconds of load before the crash, without a database, and after it is back."""


@dataclass
class RestartablePostgres:
    server: Any
    pgdata: Path
    url: str

    def stop(self) -> None:
        pgserver.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    pgdata = Path(f"/tmp/smoke-rel-pg-{secrets.token_hex(3)}")  # short: the socket path must fit in 108 bytes
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    server.psql("CREATE DATABASE smoke;")
    url = server.get_uri("smoke")
    migrate(url)
    seed(url, Settings().customer_scope())
    try:
        yield RestartablePostgres(server, pgdata, url)
    finally:
        if server.get_postmaster_info() is None or not Path(pgdata, "postmaster.pid").exists():
            server.ensure_postgres_running()
        server.cleanup()


@dataclass
class Load:
    """Provisions sent one after the other, with what each got."""

    answers: list[tuple[float, float, str, str, Any]] = field(default_factory=list)
    """(sent at, answered at, key, status or transport error, JSON body)"""
    readiness: list[tuple[float, int]] = field(default_factory=list)

    async def provisions(self, stack: Stack, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            key, n = f"load-{n}", n + 1
            at = time.monotonic()
            try:
                response = await stack.api.post(f"{SMOKE}/provision", json=provision_body(key), timeout=20)
            except httpx.TransportError as error:
                self.answers.append((at, time.monotonic(), key, type(error).__name__, None))
            else:
                is_json = response.headers.get("content-type", "").startswith("application/json")
                body = response.json() if is_json else None
                self.answers.append((at, time.monotonic(), key, str(response.status_code), body))
            await asyncio.sleep(0.08)

    async def probes(self, stack: Stack, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with_status = await stack.api.get("/readyz", timeout=20)
            self.readiness.append((time.monotonic(), with_status.status_code))
            await asyncio.sleep(0.2)


async def test_the_api_answers_503_while_postgres_restarts_recovers_by_itself_and_loses_no_provision(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    restartable_postgres: RestartablePostgres,
    row_test: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    postgres = restartable_postgres
    configured = stack_settings(settings.replace(database_url=postgres.url), cloud_url)
    load, stop = Load(), asyncio.Event()
    async with served_stack(configured) as stack:
        tasks = [asyncio.create_task(load.provisions(stack, stop)), asyncio.create_task(load.probes(stack, stop))]
        await asyncio.sleep(BEFORE)
        down_at = time.monotonic()
        await asyncio.to_thread(postgres.stop)
        stopped_at = time.monotonic()
        await asyncio.sleep(OUTAGE)
        restart_at = time.monotonic()
        await asyncio.to_thread(postgres.start)
        up_at = time.monotonic()
        await asyncio.sleep(AFTER)
        stop.set()
        await asyncio.gather(*tasks)

        acknowledged = {key: body["instance_id"] for _, _, key, status, body in load.answers if status == "200"}
        refused = [key for _, _, key, status, _ in load.answers if status == "503"]
        reached = await wait_for_status(stack.api, acknowledged.values(), "running", timeout=120)
        db = await asyncpg.connect(postgres.url)
        try:
            recorded_despite_503 = await db.fetchval(
                "SELECT count(*) FROM provision_ledger WHERE idempotency_key = ANY($1)", refused
            )
            retried = {k: await stack.api.post(f"{SMOKE}/provision", json=provision_body(k)) for k in refused}
            retried_ids = [r.json()["instance_id"] for r in retried.values() if r.status_code == 200]
            await wait_for_status(stack.api, retried_ids, "running", timeout=120)
            state = await audit(db, cloud)
        finally:
            await db.close()

    statuses = Counter(status for _, _, _, status, _ in load.answers)
    # sent once the database was gone and answered before it came back (a request sent just before the crash may
    # have committed: its 200 is right)
    while_down = [
        (sent, answered, s) for sent, answered, _, s, _ in load.answers if stopped_at <= sent and answered < restart_at
    ]
    during = Counter(s for _, _, s in while_down)
    slowest_while_down = max((answered - sent for sent, answered, _ in while_down), default=0.0)
    first_ok_after = min(
        (done - up_at for _, done, _, s, _ in load.answers if s == "200" and done >= up_at), default=None
    )
    ready_during = Counter(code for at, code in load.readiness if stopped_at <= at < restart_at)
    lost = len(acknowledged) - len(reached)
    figures.record(
        "db-restart",
        f"PostgreSQL crash-restart under load ({OUTAGE:g} s without a database)",
        row_test,
        attempted=len(load.answers),
        acknowledged=len(acknowledged),
        statuses=dict(statuses),
        answered_while_down=dict(during),
        slowest_answer_while_down_s=slowest_while_down,
        readyz_while_down=dict(ready_during),
        stop_s=stopped_at - down_at,
        restart_s=up_at - restart_at,
        first_200_after_restart_s=first_ok_after,
        refused_503_then_retried=len(retried),
        recorded_despite_503=recorded_despite_503,
        server_errors=statuses.get("500", 0),
        lost=lost,
        duplicated=state.duplicated,
        orphaned=state.orphaned,
    )
    assert set(statuses) <= {"200", "503", "500"}  # never a dropped connection
    assert during
    assert set(during) == {"503"}
    assert set(ready_during) == {503}
    assert slowest_while_down < 6  # a bounded wait (the queue's pool timeout is 5 s), never a hang
    assert first_ok_after is not None
    assert all(r.status_code == 200 for r in retried.values())
    assert lost == 0
    assert state.requests == state.servers == state.statuses.get("running")
    assert (state.duplicated, state.orphaned) == (0, 0)
    assert statuses.get("500", 0) == 0  # never a 500: a lost or refused connection is 503


async def test_while_postgres_refuses_new_connections_every_endpoint_answers_503_not_500(
    settings: Settings, cloud_url: str, restartable_postgres: RestartablePostgres
) -> None:
    postgres = restartable_postgres
    configured = stack_settings(settings.replace(database_url=postgres.url), cloud_url)
    async with served_stack(configured, worker=False) as stack:
        # A smart shutdown waits for the connections already open (this one) and meanwhile refuses every new one with
        # 57P03 "the database system is shutting down": the window a restart goes through too, made to last.
        holder = await asyncpg.connect(postgres.url)
        await asyncio.to_thread(
            pgserver.pg_ctl, ["-W", "-m", "smart", "stop"], pgdata=postgres.pgdata, user=postgres.server.system_user
        )
        try:
            report = {"request_id": "r", "provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1}
            answers = {
                "delete": await stack.api.delete(f"{SMOKE}/instances/{uuid.uuid4()}"),
                "usage": await stack.api.post(
                    "/internal/v1/agent/usage-events", json=report, headers={"Authorization": "Bearer agent"}
                ),
                "provision": await stack.api.post(f"{SMOKE}/provision", json=provision_body("refused")),
                "poll": await stack.api.get(f"{SMOKE}/instances/by-key/refused"),
            }
        finally:
            await asyncio.to_thread(postgres.stop)
            holder.terminate()
            await asyncio.to_thread(postgres.start)

            async def ready() -> bool:
                return (await stack.api.get("/readyz")).status_code == 200

            await until(ready, timeout=30)  # the pools have reconnected: they close cleanly

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 503)
