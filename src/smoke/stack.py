"""Running smoke's server side: the whole stack in one process (``smoke up``, ``smoke demo``), or one piece of it
(``smoke serve``, ``smoke worker``), each until a signal or until its work is done."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console

from smoke.adapters.postgres.embedded import EmbeddedPostgres
from smoke.adapters.postgres.migrate import migrate, seed
from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.check import CheckOptions, CheckReport, ConsoleProgress, SmokeCheck
from smoke.process import cancelled_by_sigterm, run, until_signalled
from smoke.serving import free_port, serve_asgi
from smoke.settings import Settings
from smoke.simulators import create_cloud_simulator
from smoke.worker import running_worker

__all__ = ("STATE_DIR", "demo", "serve", "up", "work")

STATE_DIR = Path(".smoke")


def up(settings: Settings, host: str, port: int) -> None:
    """``smoke up``: the stack on ``host:port`` until SIGINT or SIGTERM, its database kept in ``./.smoke/``."""
    with prepared_stack(settings) as (settings, generated_token):
        run(run_stack(settings, host, port, generated_token))


def demo(settings: Settings, template: CheckOptions, console: Console) -> CheckReport | None:
    """``smoke demo``: the stack on a free port, ``smoke check`` against it, then a stop; None when interrupted early.

    ``template`` holds the check's options; its base URL and token are replaced by the stack's own.
    """
    checks: list[SmokeCheck] = []

    async def check_against(url: str) -> None:
        assert stack_settings.ops_bearer_token is not None
        options = dataclasses.replace(template, base_url=url, token=stack_settings.ops_bearer_token)
        checks.append(SmokeCheck(options, observer=ConsoleProgress(console)))
        console.print(f"smoke demo: the stack is up on {url}; running smoke check against it", soft_wrap=True)
        await cancelled_by_sigterm(checks[0].run())

    with (
        prepared_stack(settings, out=sys.stderr) as (stack_settings, _generated),
        contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),  # the report says "interrupted"
    ):
        run(run_stack(stack_settings, "127.0.0.1", free_port(), False, main=check_against))
    return checks[0].report if checks else None


def serve(settings: Settings, host: str, port: int) -> None:
    """``smoke serve``: the API alone, until SIGINT or SIGTERM."""
    run(_serve_api(settings, host, port))


def work(settings: Settings, concurrency: int) -> None:
    """``smoke worker``: the job worker alone, until SIGINT or SIGTERM."""
    run(_run_worker(settings, concurrency))


@contextlib.contextmanager
def prepared_stack(settings: Settings, out: TextIO | None = None) -> Iterator[tuple[Settings, bool]]:
    """Settings with a token and a migrated, seeded database (embedded without DATABASE_URL); is the token new."""
    embedded = None if settings.database_url else EmbeddedPostgres(STATE_DIR / "pgdata")
    generated_token = settings.ops_bearer_token is None
    settings = settings.replace(
        ops_bearer_token=settings.ops_bearer_token or secrets.token_urlsafe(24),
        agent_token_secret=settings.agent_token_secret or secrets.token_urlsafe(32),
    )
    try:
        if embedded is not None:
            print(f"smoke: starting embedded PostgreSQL in {STATE_DIR / 'pgdata'}", file=out)
            settings = settings.replace(database_url=embedded.start())
        assert settings.database_url is not None
        migrate(settings.database_url)
        seed(settings.database_url, settings.customer_scope())
        yield settings, generated_token
    finally:
        if embedded is not None:
            embedded.stop()


def _print_banner(settings: Settings, url: str, generated_token: bool) -> None:
    print(f"smoke: API on {url}  (docs: {url}/schema)")
    print(f"smoke: cloud: {settings.hetzner_api_url}")
    if generated_token:
        print(f"smoke: generated OPS_BEARER_TOKEN={settings.ops_bearer_token}")
    token = settings.ops_bearer_token if generated_token else "$OPS_BEARER_TOKEN"
    print(
        f"  curl -X POST {url}/internal/v1/smoke/provision -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"idempotency_key": "try-1", "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"}\''
    )


async def _serve_api(settings: Settings, host: str, port: int) -> None:
    async with serve_asgi(create_app(make_container(settings)), host=host, port=port):
        await until_signalled()
    print("smoke: stopped")


async def _run_worker(settings: Settings, concurrency: int) -> None:
    container = make_container(settings)
    try:
        async with running_worker(container, settings, concurrency=concurrency):
            await until_signalled()
    finally:
        await container.close()


async def run_stack(
    settings: Settings,
    host: str,
    port: int,
    generated_token: bool,
    main: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """API, worker and (without a Hetzner token) the simulated cloud, in this one process.

    Runs until SIGINT or SIGTERM; or, given ``main``, until ``main(api_url)`` returns (then quietly: no banner).
    """
    url = f"http://{host}:{port}"
    async with contextlib.AsyncExitStack() as stack:
        if settings.hetzner_api_token is None:
            cloud = await stack.enter_async_context(serve_asgi(create_cloud_simulator(), host="127.0.0.1"))
            settings = settings.replace(
                hetzner_api_url=f"{cloud}/v1",
                hetzner_api_token="sim-token",  # noqa: S106  (the simulator's own token)
                agent_url_template=f"{cloud}/agents/{{provider_server_id}}",
                public_url=url,
                provision_poll_seconds=0.25,
            )
        container = make_container(settings)
        await stack.enter_async_context(serve_asgi(create_app(container), host=host, port=port))
        await stack.enter_async_context(running_worker(container, settings))
        if main is not None:
            await main(url)
            return
        _print_banner(settings, url, generated_token)
        await until_signalled()
    print("smoke: stopped")
