"""PostgreSQL restarting under load: the API answers 503 (never 500) meanwhile, recovers by itself, and no
acknowledged provision is lost.

The database is an embedded PostgreSQL of this test's own (``EmbeddedPostgres`` in a temporary directory), so it can
be stopped and started without touching the machine's server: ``pg_ctl stop -m immediate`` (a crash: every backend
killed, no checkpoint), a while without a database, then ``pg_ctl start`` (crash recovery). The API and an
in-process worker run on it throughout; nothing is restarted but PostgreSQL.

Each phase lasts until what it is there to observe has happened, not a fixed time: load runs until provisions are
acknowledged; the database stays down (at least ``OUTAGE`` seconds) until provisions and ``/readyz`` probes sent
after the crash have been answered; after the restart, until a provision is acknowledged again. Each wait is bounded
and fails saying what it waited for. With fixed sleeps (1.5 s, 3 s down, 3 s) the test failed now and then with
``answered_while_down={}``: a provision in flight at the crash, between its ledger commit and its enqueue, waits for
the queue's psycopg pool (5 s timeout) while the SQLAlchemy side fails in milliseconds, so the one sequential load
loop was held past the whole 3 s outage and sent nothing while the database was down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from smoke.adapters.postgres.embedded import EmbeddedPostgres
from smoke.adapters.postgres.migrate import migrate, seed
from smoke.settings import Settings
from tests.conftest import short_temp_dir
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

OUTAGE = 3.0
"""The least time without a database, in seconds (it lasts until the requests sent meanwhile have been answered)."""
ACKNOWLEDGED_BEFORE = 3
"""Provisions acknowledged before the crash."""
ANSWERED_WHILE_DOWN = 5
"""Provisions sent after the crash and answered before the restart, at least."""
PHASE_LIMIT = 60.0
"""The longest any phase may wait for what it waits for, in seconds."""


@pytest.fixture
def restartable_postgres() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL of this test's own, migrated and seeded; its directory is removed at the end."""
    with short_temp_dir("smoke-rel-pg-") as root:  # short: the socket path must fit in 108 bytes
        postgres = EmbeddedPostgres(root / "pgdata", delete=True)
        url = postgres.start()
        try:
            migrate(url)
            seed(url, Settings().customer_scope())
            yield postgres
        finally:
            postgres.stop()


async def refuses_connections(url: str) -> bool:
    """Whether a new connection to ``url`` fails (the server is really down, not only told to go)."""
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return True
    await conn.close()
    return False


@dataclass
class Load:
    """Provisions sent one after the other and ``/readyz`` probes, with what each got."""

    answers: list[tuple[float, float, str, str, Any]] = field(default_factory=list)
    """(sent at, answered at, key, status or transport error, JSON body)"""
    readiness: list[tuple[float, float, int]] = field(default_factory=list)
    """(sent at, answered at, status)"""

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
            at = time.monotonic()
            with_status = await stack.api.get("/readyz", timeout=20)
            self.readiness.append((at, time.monotonic(), with_status.status_code))
            await asyncio.sleep(0.2)

    def provisions_sent_since(self, since: float, status: str | None = None) -> int:
        """Provisions sent at or after ``since`` and answered (with ``status``, if given)."""
        return sum(1 for sent, _, _, s, _ in self.answers if sent >= since and status in (None, s))

    def probes_sent_since(self, since: float, status: int | None = None) -> int:
        return sum(1 for sent, _, code in self.readiness if sent >= since and status in (None, code))


async def phase(what: str, done: Any, tasks: list[asyncio.Task[None]], timeout: float = PHASE_LIMIT) -> None:
    """Wait until ``done()`` (a plain callable) is true, at most ``timeout`` s; fail naming ``what`` otherwise, or
    at once if a load task died."""
    deadline = time.monotonic() + timeout
    while not done():
        for task in tasks:
            if task.done():
                task.result()  # raises what killed it
                raise AssertionError(f"a load task stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def test_the_api_answers_503_while_postgres_restarts_recovers_by_itself_and_loses_no_provision(
    settings: Settings,
    cloud_url: str,
    cloud: httpx.AsyncClient,
    restartable_postgres: EmbeddedPostgres,
    row_test: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    postgres = restartable_postgres
    configured = stack_settings(settings.replace(database_url=postgres.url), cloud_url)
    load, stop = Load(), asyncio.Event()
    async with served_stack(configured) as stack:
        tasks = [asyncio.create_task(load.provisions(stack, stop)), asyncio.create_task(load.probes(stack, stop))]
        started_at = time.monotonic()
        await phase(
            f"{ACKNOWLEDGED_BEFORE} provisions acknowledged before the crash",
            lambda: load.provisions_sent_since(started_at, "200") >= ACKNOWLEDGED_BEFORE,
            tasks,
        )
        down_at = time.monotonic()
        await asyncio.to_thread(postgres.crash)  # returns once the postmaster has exited
        assert await refuses_connections(postgres.url), "PostgreSQL still accepts connections after the crash"
        stopped_at = time.monotonic()
        await phase(
            f"{ANSWERED_WHILE_DOWN} provisions and a /readyz probe sent after the crash answered, {OUTAGE:g} s passed",
            lambda: (
                load.provisions_sent_since(stopped_at) >= ANSWERED_WHILE_DOWN
                and load.probes_sent_since(stopped_at) >= 1
                and time.monotonic() - stopped_at >= OUTAGE
            ),
            tasks,
        )
        restart_at = time.monotonic()
        await asyncio.to_thread(postgres.resume)
        up_at = time.monotonic()
        await phase(
            "a provision acknowledged and /readyz 200 after the restart",
            lambda: load.provisions_sent_since(up_at, "200") >= 1 and load.probes_sent_since(up_at, 200) >= 1,
            tasks,
        )
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
    ready_during = Counter(
        code for sent, answered, code in load.readiness if stopped_at <= sent and answered < restart_at
    )
    # the request in flight when the crash came: it may wait for a pool's timeout and hold the load loop meanwhile
    in_flight_at_crash = max(
        (answered - sent for sent, answered, _, _, _ in load.answers if sent < stopped_at and answered >= down_at),
        default=0.0,
    )
    lost = len(acknowledged) - len(reached)
    figures.record(
        "db-restart",
        "PostgreSQL crash-restart under load",
        row_test,
        attempted=len(load.answers),
        acknowledged=len(acknowledged),
        statuses=dict(statuses),
        answered_while_down=dict(during),
        slowest_answer_while_down_s=slowest_while_down,
        readyz_while_down=dict(ready_during),
        stop_s=stopped_at - down_at,
        in_flight_at_crash_s=in_flight_at_crash,
        outage_s=restart_at - stopped_at,
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
    settings: Settings, cloud_url: str, restartable_postgres: EmbeddedPostgres
) -> None:
    postgres = restartable_postgres
    configured = stack_settings(settings.replace(database_url=postgres.url), cloud_url)
    async with served_stack(configured, worker=False) as stack:
        # A smart shutdown waits for the connections already open (this one) and meanwhile refuses every new one with
        # 57P03 "the database system is shutting down": the window a restart goes through too, made to last.
        holder = await asyncpg.connect(postgres.url)
        await asyncio.to_thread(postgres.shut_down_smart)
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
            await asyncio.to_thread(postgres.crash)
            holder.terminate()
            await asyncio.to_thread(postgres.resume)

            async def ready() -> bool:
                return (await stack.api.get("/readyz")).status_code == 200

            await until(ready, timeout=30)  # the pools have reconnected: they close cleanly

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 503)
