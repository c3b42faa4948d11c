"""Running smoke's server side: the whole stack in one process (``smoke up``, ``smoke demo``), or one piece of it
(``smoke serve``, ``smoke worker``, ``smoke migrate``), each until a signal or until its work is done.

What stops a command from starting (a busy port, an unreachable database or queue, a data directory of another
PostgreSQL) is raised as ``StartupFailed``: one line saying what and what to do, never a traceback. Progress goes to
stderr; stdout carries only results (the banner of ``smoke up``, the outcome of ``smoke migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import sqlalchemy.exc
from dishka import AsyncContainer
from rich.console import Console

from smoke.adapters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError
from smoke.adapters.postgres.migrate import migrate, seed
from smoke.api import create_app
from smoke.bootstrap import ProcessBudgetProvider, make_container
from smoke.check import CheckOptions, CheckReport, ConsoleProgress, SmokeCheck
from smoke.domain.errors import StorageUnavailable
from smoke.preflight import catalog_problems as _catalog_problems
from smoke.preflight import preflight
from smoke.process import StartupFailed, cancelled_by_sigterm, run, until_signalled
from smoke.serving import DEFAULT_HEADER_TIMEOUT_SECONDS, free_port, serve_asgi
from smoke.settings import Settings
from smoke.simulators import create_cloud_simulator
from smoke.worker import RunningWorker, running_worker, worker_metrics_app

__all__ = ("STATE_DIR", "catalog_problems", "demo", "migrate_database", "serve", "up", "work")

STATE_DIR = Path(".smoke")
"""Where ``smoke up`` keeps its embedded PostgreSQL, from one run to the next (``smoke demo`` never touches it)."""
SIMULATOR_TOKEN = "sim-token"  # noqa: S105  (the simulated cloud's own, not a secret)


def up(settings: Settings, host: str, port: int, *, agents: str = "inline") -> None:
    """``smoke up``: the stack on ``host:port`` until SIGINT or SIGTERM, its database kept in ``./.smoke/``.

    ``agents``: the simulated cloud's agents (``inline`` or ``process``), when it runs (no ``HETZNER_API_TOKEN``).
    """
    with prepared_stack(settings, STATE_DIR / "pgdata") as (settings, generated_token):
        run(_run_stack(settings, host, port, generated_token, agents=agents))


def demo(settings: Settings, template: CheckOptions, console: Console, *, agents: str = "inline") -> CheckReport | None:
    """``smoke demo``: the stack on a free port and throwaway state, ``smoke check`` against it, then a stop.

    The embedded PostgreSQL lives in a new temporary directory, removed at the end: a demo never shares a database,
    and so a job queue, with a ``smoke up`` (which would take the demo's jobs, or the demo its). ``template`` holds
    the check's options; the base URL and token are the stack's. None when interrupted before the check began.
    """
    checks: list[SmokeCheck] = []

    async def check_against(url: str) -> None:
        assert stack_settings.ops_bearer_token is not None
        options = dataclasses.replace(template, base_url=url, token=stack_settings.ops_bearer_token)
        checks.append(SmokeCheck(options, observer=ConsoleProgress(console)))
        console.print(f"smoke demo: the stack is up on {url}; running smoke check against it", soft_wrap=True)
        await cancelled_by_sigterm(checks[0].run())

    with (
        _throwaway_directory("smoke-demo-") as state,
        prepared_stack(settings, state / "pgdata", throwaway=True) as (stack_settings, _generated),
        contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),  # the report says "interrupted"
    ):
        run(_run_stack(stack_settings, "127.0.0.1", free_port(), False, main=check_against, agents=agents))
    return checks[0].report if checks else None


def serve(settings: Settings, host: str, port: int) -> None:
    """``smoke serve``: the API alone, until SIGINT or SIGTERM."""
    run(_serve_api(settings, host, port))


def work(settings: Settings, concurrency: int, *, metrics_host: str, metrics_port: int) -> None:
    """``smoke worker``: the job worker alone, until SIGINT or SIGTERM, with ``/metrics`` and ``/healthz`` on
    ``metrics_host:metrics_port`` (none when the port is 0)."""
    run(_run_worker(settings, concurrency, metrics_host, metrics_port))


def migrate_database(settings: Settings, *, with_seed: bool) -> None:
    """``smoke migrate``: the migrations, and with ``with_seed`` the smoke customer and the catalog."""
    url = settings.required("DATABASE_URL")
    with _database_errors(url):
        migrate(url)
        if with_seed:
            seed(url, settings.customer_scope(), settings.catalog)


def catalog_problems(settings: Settings) -> list[str]:
    """``smoke catalog check``: one line per catalog entry the cloud cannot order (``AccountRefused`` on a refused
    token)."""

    async def ask() -> list[str]:
        overrides = () if settings.database_url else (ProcessBudgetProvider(),)
        container = make_container(settings, *overrides)
        try:
            return await _catalog_problems(container)
        finally:
            await container.close()

    return run(ask())


@contextlib.contextmanager
def prepared_stack(settings: Settings, data_dir: Path, *, throwaway: bool = False) -> Iterator[tuple[Settings, bool]]:
    """Settings with a token and a migrated, seeded database; is the token new.

    Without ``DATABASE_URL`` the database is an embedded PostgreSQL in ``data_dir`` (removed at the end when
    ``throwaway``).
    """
    embedded = None if settings.database_url else EmbeddedPostgres(data_dir, delete=throwaway)
    generated_token = settings.ops_bearer_token is None
    settings = settings.replace(
        ops_bearer_token=settings.ops_bearer_token or secrets.token_urlsafe(24),
        agent_token_secret=settings.agent_token_secret or secrets.token_urlsafe(32),
    )
    try:
        if embedded is not None:
            print(f"smoke: starting embedded PostgreSQL in {data_dir}", file=sys.stderr)
            try:
                settings = settings.replace(database_url=embedded.start())
            except EmbeddedPostgresError as error:
                raise StartupFailed(f"embedded PostgreSQL: {error}") from None
        migrate_database(settings, with_seed=True)
        yield settings, generated_token
    finally:
        if embedded is not None:
            embedded.stop()


@contextlib.contextmanager
def _throwaway_directory(prefix: str) -> Iterator[Path]:
    """A new directory, removed at the end; under ``/tmp`` when writable, so that PostgreSQL's unix socket in it
    stays well within the 107 bytes a socket path may have."""
    parent = "/tmp" if os.access("/tmp", os.W_OK) else None  # noqa: S108  (a private mkdtemp directory, mode 0700)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """An unreachable database as ``StartupFailed``, naming the server (never its password) and the cause."""
    try:
        yield
    except sqlalchemy.exc.OperationalError as error:
        cause = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
        raise StartupFailed(
            f"cannot reach the database at {_without_credentials(url)} (DATABASE_URL): {cause}"
        ) from None


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


async def _listen(
    stack: contextlib.AsyncExitStack,
    app: Any,
    host: str,
    port: int,
    *,
    option: str = "--port",
    lifespan: Literal["on", "off"] = "on",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
) -> str:
    """Serve ``app`` on ``host:port`` until ``stack`` closes; its URL. A port that cannot be bound is one line,
    naming the command's ``option`` that chose it."""
    try:
        served = serve_asgi(app, host=host, port=port, lifespan=lifespan, header_timeout=header_timeout)
        return await stack.enter_async_context(served)
    except OSError as error:
        raise StartupFailed(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another {option}"
        ) from None


async def _start_worker(
    stack: contextlib.AsyncExitStack, container: AsyncContainer, settings: Settings, *, concurrency: int = 10
) -> RunningWorker:
    """The worker, running until ``stack`` closes. A queue that cannot be reached is one line."""
    try:
        return await stack.enter_async_context(running_worker(container, settings, concurrency=concurrency))
    except StorageUnavailable as error:
        variable = "QUEUE_URL" if settings.queue_url else "DATABASE_URL"
        where = _without_credentials(settings.queue_url or settings.database_url or "")
        cause = str(error).removeprefix("queue unavailable: ")
        raise StartupFailed(f"cannot reach the queue at {where} ({variable}): {cause}") from None


def _freeze_what_start_up_made() -> None:
    """Collect start-up's garbage once and freeze the survivors (the app's ~170k long-lived objects).

    Otherwise every full collection walks them all (~76 ms here, the read path's p99 before this).
    """
    gc.collect()
    gc.freeze()


def _print_banner(settings: Settings, url: str, generated_token: bool) -> None:
    """Where the API is, and a ``curl`` that works as pasted (the token from the environment, a fresh key)."""
    print(f"smoke: API on {url}  (docs: {url}/schema)")
    print(f"smoke: cloud: {settings.hetzner_api_url}")
    if generated_token:
        print(f"smoke: generated a token for this run: export OPS_BEARER_TOKEN={settings.ops_bearer_token}")
    body = f'{{"idempotency_key": "try-{secrets.token_hex(4)}", "manifest_id": "agent-default", '
    body += '"region_id": "fsn1", "tier_id": "small"}'
    print(
        f'  curl -X POST {url}/internal/v1/smoke/provision -H "Authorization: Bearer $OPS_BEARER_TOKEN" '
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


async def _serve_api(settings: Settings, host: str, port: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        app = create_app(make_container(settings))  # the app closes its container
        await _listen(stack, app, host, port, header_timeout=settings.header_timeout_seconds)
        _freeze_what_start_up_made()
        await until_signalled()
    print("smoke: stopped", file=sys.stderr)


async def _run_worker(settings: Settings, concurrency: int, metrics_host: str, metrics_port: int) -> None:
    container = make_container(settings)
    try:
        await preflight(container)
        async with contextlib.AsyncExitStack() as stack:
            worker = await _start_worker(stack, container, settings, concurrency=concurrency)
            if metrics_port:
                metrics = worker_metrics_app(lambda: worker.alive)
                url = await _listen(stack, metrics, metrics_host, metrics_port, option="--metrics-port", lifespan="off")
                print(f"smoke: worker metrics on {url}/metrics, health on {url}/healthz", file=sys.stderr)
            await until_signalled()
    finally:
        await container.close()
    print("smoke: stopped", file=sys.stderr)


async def _run_stack(
    settings: Settings,
    host: str,
    port: int,
    generated_token: bool,
    main: Callable[[str], Awaitable[None]] | None = None,
    agents: str = "inline",
) -> None:
    """API, worker and (without a Hetzner token) the simulated cloud with ``agents``, in this one process.

    Runs until SIGINT or SIGTERM; or, given ``main``, until ``main(api_url)`` returns (then quietly: no banner).
    """
    url = f"http://{host}:{port}"
    async with contextlib.AsyncExitStack() as stack:
        if settings.hetzner_api_token is None:
            cloud = await _listen(stack, create_cloud_simulator(agents=agents), "127.0.0.1", 0)
            settings = settings.replace(
                hetzner_api_url=f"{cloud}/v1",
                hetzner_api_token=SIMULATOR_TOKEN,
                agent_url_template=f"{cloud}/agents/{{provider_server_id}}",
                public_url=url,
                provision_poll_seconds=0.25,
            )
        container = make_container(settings)  # closed by the app when it stops
        await _listen(stack, create_app(container), host, port, header_timeout=settings.header_timeout_seconds)
        await preflight(container)
        await _start_worker(stack, container, settings)
        _freeze_what_start_up_made()
        if main is not None:
            await main(url)
            return
        _print_banner(settings, url, generated_token)
        await until_signalled()
    print("smoke: stopped", file=sys.stderr)
