"""Where Smoke Status's CPU goes: the ASGI apps called in-process, sequentially, CPU µs per request.

    uv run --group bench python benchmarks/profile_status.py [--calls 3000] [--cprofile]

Also: how long a full ``gc.collect()`` takes in a process running the smoke API, before and after ``gc.freeze()``.

No server and no sockets: each call runs the app's ASGI callable on one loop, so the figure is the app's own CPU
per request (plus asyncpg's client side), without the HTTP server. Variants isolate what each layer costs:

- ``bare``: the baseline app (benchmarks/apps/bare_asgi.py);
- ``smoke``: the smoke API as ``smoke serve`` builds it;
- ``litestar-min``: a Litestar app with the same guard, path and ``StatusRead`` but the reader taken straight from
  the APP scope (no dishka REQUEST scope, no ``Provisioner``): what the framework alone costs;
- ``smoke-no-request-middleware``: the smoke API without its outermost ``RequestContextMiddleware`` (request id,
  Prometheus counters and histogram): what that middleware costs;
- ``smoke-app-scope-status``: the smoke API whose ``Provisioner`` is built from APP-scoped parts only (the
  session-bound stores replaced by placeholders that Status never touches): what the per-request dishka scope
  and the SQLAlchemy session of the REQUEST-scoped ``Provisioner`` cost.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import uvloop
from dishka import Provider, Scope, provide

from benchmarks.harness import SMOKE, bench_database, log, seed_instances, table, write_result
from smoke.domain.models import CustomerScope
from smoke.domain.ports import Catalog, Clock, InstanceReader, JobQueue
from smoke.domain.services import Provisioner
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

        for _ in range(200):
            status = await once()
        assert status == 200, status
        gc.collect()
        profiler = cProfile.Profile() if profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(calls):
            await once()
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    out: dict[str, Any] = {
        "cpu_us_per_req": round(1e6 * cpu / calls, 1),
        "wall_us_per_req": round(1e6 * wall / calls, 1),
    }
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(45)
        out["profile"] = buf.getvalue()
    return out


def _bare_app(url: str, token: str) -> Any:
    os.environ["DATABASE_URL"], os.environ["OPS_BEARER_TOKEN"] = url, token
    import importlib

    import benchmarks.apps.bare_asgi as bare

    bare = importlib.reload(bare)
    return bare.app


def _settings(url: str, token: str) -> Settings:
    return Settings(database_url=url, ops_bearer_token=token, agent_token_secret="x" * 32, log_level="WARNING")


def _smoke_app(url: str, token: str) -> Any:
    from smoke.api import create_app
    from smoke.bootstrap import make_container

    return create_app(make_container(_settings(url, token)))


class AppScopedProvisioner(Provider):
    """``Provisioner`` once, at APP scope, from APP-scoped parts (Status uses only its reader and customer scope)."""

    @provide(scope=Scope.APP)
    def provisioner(
        self, scope: CustomerScope, reader: InstanceReader, catalog: Catalog, queue: JobQueue, clock: Clock
    ) -> Provisioner:
        return Provisioner(
            scope=scope,
            max_live_instances=10,
            ledger=None,
            catalog=catalog,  # type: ignore[arg-type]
            reader=reader,
            queue=queue,
            uow=None,
            clock=clock,  # type: ignore[arg-type]
        )


def _smoke_app_scope_status(url: str, token: str) -> Any:
    from smoke.api import create_app
    from smoke.bootstrap import make_container

    return create_app(make_container(_settings(url, token), AppScopedProvisioner()))


def _without_request_middleware(app: Any) -> Any:
    """The app minus its outermost ``RequestContextMiddleware`` (request id, metrics), if it has one."""
    handler = app.asgi_handler
    if type(handler).__name__ == "RequestContextMiddleware":
        app.asgi_handler = handler.app
    return app


def _smoke_no_request_middleware(url: str, token: str) -> Any:
    return _without_request_middleware(_smoke_app(url, token))


def _litestar_min(url: str, token: str) -> Any:
    """Litestar with smoke's guard, path and schema, the asyncpg reader from app state; no dishka."""
    from litestar import Litestar, get
    from litestar.datastructures import State
    from litestar.params import FromPath

    from smoke.adapters.postgres.reads import AsyncpgInstanceReader
    from smoke.api.auth import ops_bearer_guard
    from smoke.api.schemas import StatusRead

    async def startup(app: Litestar) -> None:
        app.state.ops_token = token.encode()
        app.state.pool = await asyncpg.create_pool(url, min_size=0, max_size=10)
        app.state.reader = AsyncpgInstanceReader(app.state.pool)

    async def shutdown(app: Litestar) -> None:
        await app.state.pool.close()

    @get(f"{SMOKE}/instances/{{instance_id:str}}", guards=[ops_bearer_guard])
    async def status(instance_id: FromPath[uuid.UUID], state: State) -> StatusRead:
        view = await state.reader.view(DEFAULT_CUSTOMER_ID, instance_id)
        return StatusRead(view.hostname, view.id, view.status)

    namespace = {"StatusRead": StatusRead, "FromPath": FromPath, "State": State, "uuid": uuid}
    return Litestar(
        [status], on_startup=[startup], on_shutdown=[shutdown], logging_config=None, signature_namespace=namespace
    )


VARIANTS = {
    "bare": _bare_app,
    "litestar-min": _litestar_min,
    "smoke-app-scope-status": _smoke_app_scope_status,
    "smoke-no-request-middleware": _smoke_no_request_middleware,
    "smoke": _smoke_app,
}


async def _gc_pause(url: str, token: str) -> dict[str, Any]:
    """A full ``gc.collect()`` in a process that has started the smoke API and served it: how long, how many objects."""
    app = _smoke_app(url, token)
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true", help="print a cProfile of the smoke variant")
    args = parser.parse_args()
    token = secrets.token_urlsafe(18)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    async with bench_database("profile") as url:
        await seed_instances(url, 10_000, customers=50)
        conn = await asyncpg.connect(url)
        instance_id = await conn.fetchval(
            "SELECT id FROM instances WHERE customer_id = $1 ORDER BY hostname LIMIT 1", DEFAULT_CUSTOMER_ID
        )
        await conn.close()
        path = f"{SMOKE}/instances/{instance_id}"
        gc_pause = await _gc_pause(url, token)
        log(f"gc: {gc_pause}")
        for rep in range(args.repeats):
            for name, factory in VARIANTS.items():
                profile = args.cprofile and name == "smoke" and rep == 0
                result = await _measure(factory(url, token), path, token, args.calls, profile)
                if "profile" in result:
                    print(result.pop("profile"))
                results[name].append(result)
                log(f"{name}: {result}")
    rows = []
    for name, runs in results.items():
        cpu = sorted(r["cpu_us_per_req"] for r in runs)
        rows.append(
            [
                name,
                cpu[len(cpu) // 2],
                f"{cpu[0]}-{cpu[-1]}",
                sorted(r["wall_us_per_req"] for r in runs)[len(runs) // 2],
            ]
        )
    text = table(["variant", "CPU µs/req (median)", "range", "wall µs/req (median)"], rows)
    print(text)
    print(f"\nA full gc.collect() in the smoke API process: {gc_pause}")
    write_result(
        "profile_status",
        {"calls": args.calls, "repeats": args.repeats, "results": results, "table": text, "gc": gc_pause},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
