"""The ``smoke`` command line: up | serve | worker | migrate | simulate-cloud."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from smoke.settings import Settings, SettingsError

__all__ = ("main",)

EXIT_USAGE = 2
STATE_DIR = Path(".smoke")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows at once, also in a pipe
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for chatty in ("pgserver", "alembic", "httpx"):
            logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
        return int(args.run(args, settings) or 0)
    except SettingsError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoke", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    up = commands.add_parser("up", help="the whole stack in one process, on embedded defaults")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.set_defaults(run=_up)

    serve = commands.add_parser("serve", help="the API (needs DATABASE_URL and OPS_BEARER_TOKEN)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="the job worker (needs DATABASE_URL, HETZNER_API_TOKEN, ...)")
    worker.add_argument("--concurrency", type=int, default=10)
    worker.set_defaults(run=_worker)

    simulate = commands.add_parser("simulate-cloud", help="the simulated Hetzner Cloud and its virtual agents")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=9000)
    simulate.add_argument("--token", default="sim-token")
    simulate.add_argument("--action-seconds", type=float, default=1.0)
    simulate.add_argument("--boot-seconds", type=float, default=1.0)
    simulate.add_argument("--token-delay-ms", type=int, default=20)
    simulate.set_defaults(run=_simulate_cloud)

    migrate = commands.add_parser("migrate", help="apply the database migrations (needs DATABASE_URL)")
    migrate.add_argument("--seed", action="store_true", help="also create the smoke customer and the catalog")
    migrate.set_defaults(run=_migrate)
    return parser


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.adapters.postgres.migrate import migrate, seed

    settings.require("DATABASE_URL")
    assert settings.database_url is not None
    migrate(settings.database_url)
    if args.seed:
        seed(settings.database_url, settings.customer_scope())
    print("smoke: database migrated" + (" and seeded" if args.seed else ""))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET")
    asyncio.run(_serve_api(settings, args.host, args.port))
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "HETZNER_API_TOKEN", "AGENT_TOKEN_SECRET")
    asyncio.run(_run_worker(settings, args.concurrency))
    return 0


def _simulate_cloud(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.serving import serve_asgi
    from smoke.simulators import create_cloud_simulator

    simulator = create_cloud_simulator(
        token=args.token,
        action_seconds=args.action_seconds,
        boot_seconds=args.boot_seconds,
        token_delay_ms=args.token_delay_ms,
    )

    async def run() -> None:
        async with serve_asgi(simulator, host=args.host, port=args.port) as url:
            print(f"smoke: simulated Hetzner Cloud on {url}/v1 (token {args.token}), agents on {url}/agents/<id>")
            await _until_signalled()

    asyncio.run(run())
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.adapters.postgres.embedded import EmbeddedPostgres
    from smoke.adapters.postgres.migrate import migrate, seed

    embedded = None if settings.database_url else EmbeddedPostgres(STATE_DIR / "pgdata")
    generated_token = settings.ops_bearer_token is None
    settings = settings.replace(
        ops_bearer_token=settings.ops_bearer_token or secrets.token_urlsafe(24),
        agent_token_secret=settings.agent_token_secret or secrets.token_urlsafe(32),
    )
    try:
        if embedded is not None:
            print(f"smoke: starting embedded PostgreSQL in {STATE_DIR / 'pgdata'}")
            settings = settings.replace(database_url=embedded.start())
        assert settings.database_url is not None
        migrate(settings.database_url)
        seed(settings.database_url, settings.customer_scope())
        asyncio.run(_run_stack(settings, args.host, args.port, generated_token))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


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


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_api(settings: Settings, host: str, port: int) -> None:
    from smoke.api import create_app
    from smoke.bootstrap import make_container
    from smoke.serving import serve_asgi

    async with serve_asgi(create_app(make_container(settings)), host=host, port=port):
        await _until_signalled()
    print("smoke: stopped")


async def _run_worker(settings: Settings, concurrency: int) -> None:
    from smoke.bootstrap import make_container
    from smoke.worker import running_worker

    container = make_container(settings)
    try:
        async with running_worker(container, settings, concurrency=concurrency):
            await _until_signalled()
    finally:
        await container.close()


async def _run_stack(settings: Settings, host: str, port: int, generated_token: bool) -> None:
    """API, worker and (without a Hetzner token) the simulated cloud, in this one process."""
    from smoke.api import create_app
    from smoke.bootstrap import make_container
    from smoke.serving import serve_asgi
    from smoke.simulators import create_cloud_simulator
    from smoke.worker import running_worker

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
        _print_banner(settings, url, generated_token)
        await _until_signalled()
    print("smoke: stopped")
