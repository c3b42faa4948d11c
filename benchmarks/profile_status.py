"""Where the read path's CPU goes: the ASGI apps called in-process, sequentially, CPU µs per request.

    uv run --group bench python benchmarks/profile_status.py [--calls 3000] [--repeats 5] [--cprofile]

Also: how long a full ``gc.collect()`` takes in a process running the smoke API, before and after ``gc.freeze()``.

No server and no sockets: each call runs the app's ASGI callable on one loop (uvloop), so the figure is the app's
own CPU per request (plus asyncpg's client side), without the HTTP server. Smoke Status and Smoke Poll are each
measured; the variants are interleaved, ``--repeats`` rounds, and each lever of this round is measured by putting
back what it removed (the "+" variants) or by taking a layer away (the "without" variants):

- ``bare``: the baseline app (benchmarks/apps/bare_asgi.py), asyncpg's default pool;
- ``bare, pool without reset``: the same with smoke's read pool setting (``reset`` that sends nothing);
- ``litestar-min``: a Litestar app with smoke's guard, paths and schemas, the reader from app state, no dishka,
  no middleware: what the framework alone costs;
- ``smoke``: the smoke API as ``smoke serve`` builds it;
- ``smoke + dishka REQUEST scope``: plus dishka's own per-request middleware (``setup_dishka``), as on main;
- ``smoke + default pool reset``: its read pool with asyncpg's default reset (a second round trip), as on main;
- ``smoke without RequestContextMiddleware``: without the request-id and metrics layer: what that layer costs now.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import io
import os
import pstats
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import uvloop
from dishka import Provider, Scope, provide

from benchmarks.harness import SMOKE, bench_database, log, median, seed_instances, table, write_result
from smoke.settings import DEFAULT_CUSTOMER_ID, Settings


class _Recorder:
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class _Lifespan:
    """Drive an ASGI app's lifespan in-process."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.state: dict[str, Any] = {}

    async def __aenter__(self) -> _Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self.task = asyncio.create_task(self.app(scope, self.queue.get, self.sent.put))
        await self.queue.put({"type": "lifespan.startup"})
        message = await asyncio.wait_for(self.sent.get(), 10)
        assert message["type"] == "lifespan.startup.complete", message
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.queue.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self.task, 10)


async def _measure(app: Any, path: str, token: str, calls: int, profile: bool) -> dict[str, Any]:
    async with _Lifespan(app) as lifespan:

        async def once() -> int:
            scope = _scope(path, token)
            scope["state"] = dict(lifespan.state)
            recorder = _Recorder()
            await app(scope, _receive, recorder)
            return recorder.status

        for _ in range(300):
            status = await once()
        assert status == 200, (path, status)
        gc.collect()
        gc.freeze()  # as smoke serve does once it has started
        profiler = cProfile.Profile() if profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(calls):
            await once()
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.unfreeze()
    out: dict[str, Any] = {
        "cpu_us_per_req": round(1e6 * cpu / calls, 1),
        "wall_us_per_req": round(1e6 * wall / calls, 1),
    }
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(os.environ.get("PSORT", "tottime")).print_stats(40)
        out["profile"] = buf.getvalue()
    return out


def _bare(reset: str) -> Callable[[str, str], Any]:
    def build(url: str, token: str) -> Any:
        os.environ.update(DATABASE_URL=url, OPS_BEARER_TOKEN=token, BARE_POOL_RESET=reset)
        import benchmarks.apps.bare_asgi as bare

        return importlib.reload(bare).app

    return build


def _settings(url: str, token: str) -> Settings:
    return Settings(database_url=url, ops_bearer_token=token, agent_token_secret="x" * 32, log_level="WARNING")


class _DefaultPoolReset(Provider):
    """The read pool as on main: asyncpg's default reset, one more round trip each time a connection goes back."""

    @provide(scope=Scope.APP, override=True)
    async def provide_pool(self, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
        pool = await asyncpg.create_pool(settings.required("DATABASE_URL"), min_size=0, max_size=10, command_timeout=30)
        yield pool
        await pool.close()


def _smoke(*, request_scope: bool = False, default_reset: bool = False, middleware: bool = True) -> Any:
    def build(url: str, token: str) -> Any:
        from dishka.integrations.litestar import make_add_request_container_middleware

        from smoke.api import create_app
        from smoke.bootstrap import make_container

        overrides = [_DefaultPoolReset()] if default_reset else []
        app = create_app(make_container(_settings(url, token), *overrides))
        outer = app.asgi_handler
        if not middleware and type(outer).__name__ == "RequestContextMiddleware":
            app.asgi_handler = outer.app  # type: ignore[attr-defined]
        if request_scope:  # setup_dishka's layer, inside the request-id layer as it was on main
            target = app.asgi_handler if not middleware else outer
            target.app = make_add_request_container_middleware(target.app)  # type: ignore[attr-defined]
        return app

    return build


def _litestar_min(url: str, token: str) -> Any:
    """Litestar with smoke's guard, paths and schemas, the asyncpg reader from app state; no dishka, no middleware."""
    from typing import Annotated

    from litestar import Litestar, get
    from litestar.datastructures import State
    from litestar.params import FromPath, Parameter

    from smoke.adapters.postgres.reads import AsyncpgInstanceReader, nothing_to_reset
    from smoke.api.auth import ops_bearer_guard
    from smoke.api.schemas import IDEMPOTENCY_KEY_PATTERN, PollRead, StatusRead

    async def startup(app: Litestar) -> None:
        app.state.ops_token = token.encode()
        app.state.pool = await asyncpg.create_pool(url, min_size=0, max_size=10, reset=nothing_to_reset)
        app.state.reader = AsyncpgInstanceReader(app.state.pool, Settings().customer_scope())

    async def shutdown(app: Litestar) -> None:
        await app.state.pool.close()

    @get(f"{SMOKE}/instances/by-key/{{idempotency_key:str}}", guards=[ops_bearer_guard])
    async def poll(
        idempotency_key: Annotated[str, Parameter(min_length=1, max_length=255, pattern=IDEMPOTENCY_KEY_PATTERN)],
        state: State,
    ) -> PollRead:
        result = await state.reader.poll(idempotency_key)
        return PollRead(result.found, result.instance_id, result.status)

    @get(f"{SMOKE}/instances/{{instance_id:str}}", guards=[ops_bearer_guard])
    async def status(instance_id: FromPath[uuid.UUID], state: State) -> StatusRead:
        view = await state.reader.view(instance_id)
        return StatusRead(view.hostname, view.id, view.status)

    namespace = {"StatusRead": StatusRead, "PollRead": PollRead, "FromPath": FromPath, "State": State, "uuid": uuid}
    namespace |= {"Annotated": Annotated, "Parameter": Parameter, "IDEMPOTENCY_KEY_PATTERN": IDEMPOTENCY_KEY_PATTERN}
    return Litestar(
        [poll, status],
        on_startup=[startup],
        on_shutdown=[shutdown],
        logging_config=None,
        openapi_config=None,
        signature_namespace=namespace,
    )


VARIANTS: dict[str, Callable[[str, str], Any]] = {
    "bare": _bare("default"),
    "bare, pool without reset": _bare("none"),
    "litestar-min": _litestar_min,
    "smoke": _smoke(),
    "smoke + dishka REQUEST scope (main)": _smoke(request_scope=True),
    "smoke + default pool reset (main)": _smoke(default_reset=True),
    "smoke without RequestContextMiddleware": _smoke(middleware=False),
}


async def _gc_pause(url: str, token: str) -> dict[str, Any]:
    """A full ``gc.collect()`` in a process that has started the smoke API and served it: how long, how many objects."""
    app = _smoke()(url, token)
    async with _Lifespan(app):
        scope_path = f"{SMOKE}/instances/{uuid.uuid4()}"
        for _ in range(100):
            await app(_scope(scope_path, token), _receive, _Recorder())
        objects = len(gc.get_objects())
        pauses = []
        for _ in range(3):
            started = time.perf_counter()
            gc.collect()
            pauses.append(round((time.perf_counter() - started) * 1e3, 1))
        gc.freeze()
        started = time.perf_counter()
        gc.collect()
        frozen = round((time.perf_counter() - started) * 1e3, 2)
        gc.unfreeze()
    return {"tracked_objects": objects, "full_collect_ms": pauses, "full_collect_after_freeze_ms": frozen}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true", help="print a cProfile of the smoke variant (Status)")
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = parser.parse_args()
    token = secrets.token_urlsafe(18)
    chosen = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only.split(",")}
    routes = ("status", "poll")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {r: {name: [] for name in chosen} for r in routes}
    async with bench_database("profile") as url:
        await seed_instances(url, 10_000, customers=50)
        conn = await asyncpg.connect(url)
        row = await conn.fetchrow(
            "SELECT i.id, l.idempotency_key FROM instances i JOIN provision_ledger l ON l.instance_id = i.id "
            "WHERE i.customer_id = $1 ORDER BY i.hostname LIMIT 1",
            DEFAULT_CUSTOMER_ID,
        )
        await conn.close()
        assert row is not None
        paths = {
            "status": f"{SMOKE}/instances/{row['id']}",
            "poll": f"{SMOKE}/instances/by-key/{row['idempotency_key']}",
        }
        gc_pause = await _gc_pause(url, token)
        log(f"gc: {gc_pause}")
        for rep in range(args.repeats):
            for route in routes:
                names = list(chosen)
                names = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the order per round
                for name in names:
                    profile = args.cprofile and name == "smoke" and rep == 0 and route == "status"
                    result = await _measure(chosen[name](url, token), paths[route], token, args.calls, profile)
                    if "profile" in result:
                        print(result.pop("profile"))
                    results[route][name].append(result)
                    log(f"{route} {name}: {result}")
    summary: dict[str, Any] = {}
    text = ""
    for route in routes:
        smoke_cpu = median(r["cpu_us_per_req"] for r in results[route].get("smoke", [{"cpu_us_per_req": 0}]))
        rows = []
        for name, runs in results[route].items():
            cpu = [r["cpu_us_per_req"] for r in runs]
            mid = median(cpu)
            summary.setdefault(route, {})[name] = {"cpu_us_median": mid, "cpu_us_range": [min(cpu), max(cpu)]}
            delta = f"{mid - smoke_cpu:+.0f}" if "smoke" in results[route] and name != "smoke" else "-"
            rows.append([name, f"{mid:.0f}", f"{min(cpu):.0f}-{max(cpu):.0f}", delta])
        text += f"\n{route}:\n" + table(["variant", "CPU µs/req (median)", "range", "vs smoke, µs"], rows) + "\n"
    print(text)
    print(f"\nA full gc.collect() in the smoke API process: {gc_pause}")
    write_result(
        "profile_status",
        {"calls": args.calls, "repeats": args.repeats, "summary": summary, "results": results, "gc": gc_pause},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
