"""Rows 9-12 of the test plan: Smoke Chat through a fault proxy between the API and the agent.

AGENT_URL_TEMPLATE points at a loopback proxy (tests/reliability/proxy.py) whose upstream is the simulated cloud's
agents or a scripted agent (tests/reliability/agents.py). tests/integration/test_chat.py covers relay fidelity
without a proxy, disconnect within 1 s (k = 1), a mid-stream failure, the turn timeout and keep-alives; this adds
the slicer, the framing corpus, per-event relay latency, disconnects after k events, cuts and stalls.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from smoke.adapters.tokens import HmacTokenIssuer
from smoke.serving import serve_asgi
from smoke.settings import Settings
from smoke.sse import SseEvent, SseParser
from tests.reliability import figures
from tests.reliability.agents import CORPUS, ID_RESET, ScriptedAgent, expected_events
from tests.reliability.proxy import FaultProxy, running_proxy
from tests.reliability.stack import SMOKE, Stack, provision_body, served_stack, stack_settings, wait_for_status

MESSAGE = "héllo wörld 世界 🎉 one two three four five six seven eight"


@dataclass
class Relay:
    stack: Stack
    proxy: FaultProxy
    agent: ScriptedAgent
    agent_address: tuple[str, int]
    cloud_address: tuple[str, int]
    cloud_url: str
    instance_id: str
    server_id: int

    def use(self, upstream: tuple[str, int], **toxics: object) -> None:
        """Send new agent connections to ``upstream`` with ``toxics``; reset the open ones."""
        self.proxy.upstream = upstream
        self.proxy.slicer = bool(toxics.get("slicer", True))
        self.proxy.cut_after = toxics.get("cut_after")  # type: ignore[assignment]
        self.proxy.stall_after = toxics.get("stall_after")  # type: ignore[assignment]
        self.proxy.reset_connections()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
async def relay(
    settings: Settings, cloud_url: str, cloud: httpx.AsyncClient, clean_database: str
) -> AsyncIterator[Relay]:
    agent = ScriptedAgent()
    async with (
        serve_asgi(agent) as agent_url,
        running_proxy(_address(cloud_url)) as proxy,
    ):
        configured = stack_settings(
            settings,
            cloud_url,
            agent_url_template=f"http://127.0.0.1:{proxy.port}/agents/{{provider_server_id}}",
            chat_turn_timeout_seconds=3,
            sse_keepalive_seconds=0.5,
        )
        async with served_stack(configured) as stack:
            receipt = (await stack.api.post(f"{SMOKE}/provision", json=provision_body("relay"))).json()
            await wait_for_status(stack.api, [receipt["instance_id"]], "running")
            [server] = (await cloud.get("/_sim/state")).json()["servers"]
            yield Relay(
                stack,
                proxy,
                agent,
                _address(agent_url),
                _address(cloud_url),
                cloud_url,
                receipt["instance_id"],
                int(server["id"]),
            )


async def _relayed(relay: Relay, message: str) -> tuple[list[tuple[float, SseEvent]], bytes, httpx.Headers]:
    parser, raw = SseParser(), b""
    events: list[tuple[float, SseEvent]] = []
    url = f"{SMOKE}/instances/{relay.instance_id}/chat"
    async with relay.stack.api.stream("POST", url, json={"message": message}) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            raw += chunk
            events.extend((time.monotonic(), event) for event in parser.feed(chunk))
        return events, raw, response.headers


async def _direct(relay: Relay, settings: Settings, message: str) -> list[SseEvent]:
    token = HmacTokenIssuer(settings.agent_token_secret or "").agent_token(uuid.UUID(relay.instance_id)).token
    parser, events = SseParser(), list[SseEvent]()
    async with (
        httpx.AsyncClient(base_url=relay.cloud_url, timeout=30) as client,
        client.stream(
            "POST",
            f"/agents/{relay.server_id}/v1/chat",
            json={"message": message},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
    return events


async def test_events_relayed_through_a_slicing_proxy_equal_the_agents_own(
    relay: Relay, settings: Settings, row_test: str
) -> None:
    turns, compared, mismatches = 0, 0, 0
    for _ in range(3):  # the simulated agent: relayed through 1-7 byte slices vs read directly
        relayed, raw, headers = await _relayed(relay, MESSAGE)
        direct = await _direct(relay, settings, MESSAGE)
        turns, compared = turns + 1, compared + len(direct)
        mismatches += [e for _, e in relayed] != direct
        assert (headers["cache-control"], headers["x-accel-buffering"]) == ("no-cache", "no")
    relay.use(relay.agent_address)
    expected = expected_events(CORPUS)
    for _ in range(5):  # the framing corpus, each time sliced differently by the agent and by the proxy
        relayed, raw, _ = await _relayed(relay, "corpus")
        turns, compared = turns + 1, compared + len(expected)
        mismatches += [e for _, e in relayed] != expected
        assert b"data: data:" not in raw
        assert b"after done" not in raw
        assert [e for e in SseParser().feed(raw) if not e.data and e.event != "message"] == []

    figures.record(
        "9",
        "SSE framing over a 1-7 byte slicing proxy (simulated agent and the framing corpus)",
        row_test,
        turns=turns,
        events_compared=compared,
        sequence_mismatches=mismatches,
        bytes_from_agent=relay.proxy.bytes_down,
        slices=relay.proxy.slices_down,
    )
    assert mismatches == 0


async def test_an_id_field_without_a_value_is_relayed_as_a_reset(relay: Relay) -> None:
    relay.use(relay.agent_address, slicer=False)

    relayed, _, _ = await _relayed(relay, "id-reset")

    assert [e for _, e in relayed] == expected_events(ID_RESET)


async def test_relay_adds_little_latency_per_event(relay: Relay, row_test: str) -> None:
    added: dict[str, list[float]] = {}
    for slicer in (False, True):
        relay.use(relay.agent_address, slicer=slicer)
        relayed, _, _ = await _relayed(relay, "timed 40")
        deltas = [(at, e) for at, e in relayed if e.event == "delta"]
        assert len(deltas) == 40
        added["sliced" if slicer else "plain"] = [at - msgspec.json.decode(e.data)["sent"] for at, e in deltas]

    figures.record(
        "10",
        "time from the agent sending an event to the client parsing it (40 events, 20 ms apart)",
        row_test,
        p50_ms=figures.percentile(added["plain"], 50) * 1000,
        p99_ms=figures.percentile(added["plain"], 99) * 1000,
        sliced_p50_ms=figures.percentile(added["sliced"], 50) * 1000,
        sliced_p99_ms=figures.percentile(added["sliced"], 99) * 1000,
    )
    assert figures.percentile(added["plain"], 99) < 0.25  # no buffering: each event goes out as it arrives


async def _database_connections(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"))
    finally:
        await conn.close()


async def test_a_client_leaving_after_k_events_closes_the_upstream_promptly_and_leaks_nothing(
    relay: Relay, cloud: httpx.AsyncClient, clean_database: str, row_test: str
) -> None:
    rng = random.Random(9)
    (await cloud.put("/_sim/faults", json={"agent": {"token_delay_ms": 30}})).raise_for_status()
    relay.use(relay.cloud_address, slicer=False)
    await _relayed(relay, MESSAGE)  # warm up: pools and connections as in steady state
    await asyncio.sleep(0.2)
    tasks_before = len(asyncio.all_tasks())
    connections_before = await _database_connections(clean_database)
    counted_before = {outcome: _turns(outcome) for outcome in ("client_left", "streaming")}
    closes: list[float] = []
    trials = 20
    for _ in range(trials):
        k = rng.randint(1, 8)
        seen = len(relay.proxy.connections)
        parser, received = SseParser(), 0
        url = f"{SMOKE}/instances/{relay.instance_id}/chat"
        async with relay.stack.api.stream("POST", url, json={"message": MESSAGE}) as response:
            async for chunk in response.aiter_raw():
                received += len(list(parser.feed(chunk)))
                if received >= k:
                    break
        left_at = time.monotonic()
        turn = relay.proxy.connections[seen:]

        async def upstream_closed(turn: list = turn) -> bool:  # type: ignore[type-arg]
            return all(c.client_closed_at is not None for c in turn)

        await _until(upstream_closed)
        closes.extend(max(0.0, c.client_closed_at - left_at) for c in turn if c.client_closed_at is not None)
    await asyncio.sleep(0.5)
    leaked_tasks = max(0, len(asyncio.all_tasks()) - tasks_before)
    leaked_db = max(0, await _database_connections(clean_database) - connections_before)
    leaked_upstream = relay.proxy.open_connections
    counted = {outcome: _turns(outcome) - before for outcome, before in counted_before.items()}

    figures.record(
        "11",
        f"client leaves after k in [1, 8] events, {trials} trials",
        row_test,
        trials=trials,
        close_p50_ms=figures.percentile(closes, 50) * 1000,
        close_p99_ms=figures.percentile(closes, 99) * 1000,
        close_max_ms=max(closes) * 1000,
        leaked_upstream_connections=leaked_upstream,
        leaked_tasks=leaked_tasks,
        leaked_db_connections=leaked_db,
    )
    assert max(closes) < 1.0
    assert (leaked_upstream, leaked_tasks, leaked_db) == (0, 0, 0)
    assert counted == {"client_left": trials, "streaming": 0}


def _turns(outcome: str) -> float:
    """``smoke_chat_turns_total{outcome}`` of this process (the API runs in it)."""
    return REGISTRY.get_sample_value("smoke_chat_turns_total", {"outcome": outcome}) or 0.0


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("upstream connection still open")
        await asyncio.sleep(0.01)


async def _read_to_the_end(relay: Relay, message: str, bound: float) -> tuple[list[SseEvent], float, float]:
    """The relayed events, when the last byte arrived (since the start) and the longest silence between bytes."""
    parser, events = SseParser(), list[SseEvent]()
    started = last = time.monotonic()
    gap = 0.0
    url = f"{SMOKE}/instances/{relay.instance_id}/chat"
    async with asyncio.timeout(bound), relay.stack.api.stream("POST", url, json={"message": message}) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            now = time.monotonic()
            gap, last = max(gap, now - last), now
            events.extend(parser.feed(chunk))
    return events, last - started, gap


async def test_an_upstream_cut_or_stalled_mid_stream_ends_the_stream_with_an_error_event(
    relay: Relay, row_test: str
) -> None:
    rng = random.Random(12)
    cut_times: list[float] = []
    hung = 0
    for _ in range(6):  # reset after a random number of body bytes (inside an event, a chunk header, a CRLF ...)
        relay.use(relay.agent_address, slicer=False, cut_after=rng.randint(1, len(CORPUS) - 200))
        try:
            events, ended, _ = await _read_to_the_end(relay, "corpus", bound=10)
        except TimeoutError:
            hung += 1
            continue
        cut_times.append(ended)
        assert events[-1].event == "error"
        assert msgspec.json.decode(events[-1].data)["detail"]
        assert events[:-1] == expected_events(CORPUS)[: len(events) - 1]
    stall_times, gaps = [], []
    for after in (1, 120):  # stop forwarding (connections held open): the turn timeout (3 s) ends it
        relay.use(relay.agent_address, slicer=False, stall_after=after)
        try:
            events, ended, gap = await _read_to_the_end(relay, "corpus", bound=15)
        except TimeoutError:
            hung += 1
            continue
        stall_times.append(ended)
        gaps.append(gap)
        assert events[-1].event == "error"
        assert "longer than 3 s" in events[-1].data

    figures.record(
        "12",
        "upstream reset after random body bytes (6 trials); upstream stalled (2 trials, turn timeout 3 s)",
        row_test,
        resets=len(cut_times),
        reset_to_error_event_max_s=max(cut_times),
        stalls=len(stall_times),
        stall_to_error_event_max_s=max(stall_times),
        max_silence_during_stall_s=max(gaps),
        hung_streams=hung,
    )
    assert hung == 0
    assert max(cut_times) < 2.0
    assert max(gaps) < 1.0  # keep-alive comments every 0.5 s bridge the silence
