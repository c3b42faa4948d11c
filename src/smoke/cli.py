"""The ``smoke`` command line: up | demo | check | serve | worker | migrate | simulate-cloud."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from smoke.observability import configure_logging
from smoke.preflight import AccountRefused
from smoke.settings import Settings, SettingsError

if TYPE_CHECKING:
    from rich.console import Console

    from smoke.check import ConsoleProgress, SmokeCheck

__all__ = ("main",)

EXIT_USAGE = 2
STATE_DIR = Path(".smoke")


T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (about a fifth more requests per second here than the default loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows at once, also in a pipe
    try:
        settings = Settings.from_env()
        secrets = (settings.ops_bearer_token, settings.hetzner_api_token, settings.agent_token_secret)
        configure_logging(settings.log_level, settings.log_format, secrets=[s for s in secrets if s])
        return int(args.run(args, settings) or 0)
    except SettingsError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return EXIT_USAGE
    except AccountRefused as error:
        print(f"smoke: the cloud account cannot serve smoke: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoke", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    up = commands.add_parser("up", help="the whole stack in one process, on embedded defaults")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument(
        "--agents",
        choices=("inline", "process"),
        default="inline",
        help="the simulated cloud's agents: in-process echo agents, or each server's user data carried out and its "
        "service run as a real process (see smoke simulate-cloud; default inline)",
    )
    up.set_defaults(run=_up)

    demo = commands.add_parser(
        "demo", help="smoke up on free ports, smoke check against it, stop; the check's exit code"
    )
    _add_check_arguments(demo)
    demo.set_defaults(run=_demo)

    check = commands.add_parser(
        "check",
        help="the CI scenario against a smoke API: exit 0 passed, 1 a step failed, 2 bad usage or configuration",
        description="Provision, poll, wait for running, chat, count the LLM usage, delete, wait for deleted. "
        "Progress goes to stderr; --json writes the result to stdout. Exit codes: 0 every step passed, 1 a step "
        "failed (an unreachable API too), 2 bad usage or configuration (missing or refused token, malformed URL, "
        "unknown catalog id), 130 interrupted (after deleting what it created).",
    )
    check.add_argument("--base-url", required=True, help="the smoke API, e.g. http://127.0.0.1:8000")
    check.add_argument("--token", help="the ops bearer token (default: $OPS_BEARER_TOKEN)")
    check.add_argument("--manifest", default="agent-default")
    check.add_argument("--region", default="fsn1")
    check.add_argument("--tier", default="small")
    check.add_argument("--keep", action="store_true", help="leave the instance in place (no delete steps)")
    _add_check_arguments(check)
    check.set_defaults(run=_check)

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
    simulate.add_argument(
        "--timing",
        choices=("fast", "realistic"),
        default="fast",
        help="fast: every action and boot 1 s; realistic: as long as at Hetzner, with jitter (default fast)",
    )
    simulate.add_argument("--action-seconds", type=float, help="how long every action runs (overrides --timing)")
    simulate.add_argument(
        "--boot-seconds", type=float, help="from running until the agent answers (overrides --timing)"
    )
    simulate.add_argument("--token-delay-ms", type=int, default=20)
    simulate.add_argument("--server-limit", type=int, help="servers the project may have at once (default: no limit)")
    simulate.add_argument(
        "--rate-limit", type=int, default=3600, help="requests the project's bucket holds and refills per hour"
    )
    simulate.add_argument(
        "--agents",
        choices=("inline", "process"),
        default="inline",
        help="inline: an in-process echo agent per server; process: each booted server writes its user data's "
        "files under a directory of its own and runs the service its runcmd starts as a real process on a loopback "
        "port (default inline)",
    )
    simulate.set_defaults(run=_simulate_cloud)

    agent = commands.add_parser("agent", help="the reference agent (SPEC §10), run as an agent VPS runs it")
    agent.add_argument("--config", required=True, metavar="PATH", help="the agent's JSON configuration")
    agent.add_argument("--host", default="0.0.0.0")  # noqa: S104  (as on a server: smoke reaches it from outside)
    agent.add_argument("--port", type=int, default=8080)
    agent.set_defaults(run=_agent)

    catalog = commands.add_parser("catalog", help="the catalog (SMOKE_CATALOG, or the built-in one)")
    catalog_actions = catalog.add_subparsers(required=True, metavar="action")
    catalog_check = catalog_actions.add_parser(
        "check",
        help="ask the cloud whether every entry can be ordered (needs HETZNER_API_TOKEN)",
        description="One line per entry that cannot be ordered. Exit codes: 0 every entry can be ordered, 1 a "
        "problem, 2 a bad catalog file or settings, or a token the cloud refuses.",
    )
    catalog_check.set_defaults(run=_catalog_check)

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
        seed(settings.database_url, settings.customer_scope(), settings.catalog)
    print("smoke: database migrated" + (" and seeded" if args.seed else ""))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET")
    _run(_serve_api(settings, args.host, args.port))
    return 0


def _catalog_check(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("HETZNER_API_TOKEN")
    problems = _run(_catalog_problems(settings))
    for problem in problems:
        print(f"smoke catalog check: {problem}")
    if not problems:
        entries = sum(map(len, (settings.catalog.regions, settings.catalog.tiers, settings.catalog.manifests)))
        print(f"smoke catalog check: all {entries} entries can be ordered")
    return 1 if problems else 0


async def _catalog_problems(settings: Settings) -> list[str]:
    from smoke.bootstrap import make_container
    from smoke.preflight import catalog_problems

    container = make_container(settings)
    try:
        return await catalog_problems(container)
    finally:
        await container.close()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "HETZNER_API_TOKEN", "AGENT_TOKEN_SECRET")
    _run(_run_worker(settings, args.concurrency))
    return 0


def _simulate_cloud(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.serving import serve_asgi
    from smoke.simulators import create_cloud_simulator

    try:
        simulator = create_cloud_simulator(
            token=args.token,
            action_seconds=args.action_seconds,
            boot_seconds=args.boot_seconds,
            token_delay_ms=args.token_delay_ms,
            timing=args.timing,
            server_limit=args.server_limit,
            rate_limit=args.rate_limit,
            agents=args.agents,
        )
    except ValueError as exc:
        print(f"smoke: simulate-cloud: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def run() -> None:
        async with serve_asgi(simulator, host=args.host, port=args.port) as url:
            print(f"smoke: simulated Hetzner Cloud on {url}/v1 (token {args.token}), agents on {url}/agents/<id>")
            await _until_signalled()

    _run(run())
    return 0


def _agent(args: argparse.Namespace, settings: Settings) -> int:
    """Become the packaged reference agent, started as a server starts it: ``python -I``, the standard library only."""
    from importlib.resources import files

    agent = str(files("smoke.agent").joinpath("reference.py"))
    command = [sys.executable, "-I", agent, "--config", args.config, "--host", args.host, "--port", str(args.port)]
    os.execv(sys.executable, command)  # noqa: S606  (signals and the exit code are the agent's own)


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", default="hello from smoke check", help="the chat message (1..4000 characters)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole scenario (default 900)")
    parser.add_argument("--junit-xml", type=Path, metavar="PATH", help="also write a JUnit XML report here")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")


def _up(args: argparse.Namespace, settings: Settings) -> int:
    with _prepared_stack(settings) as (settings, generated_token):
        _run(_run_stack(settings, args.host, args.port, generated_token, agents=args.agents))
    return 0


@contextlib.contextmanager
def _prepared_stack(settings: Settings, out: TextIO | None = None) -> Iterator[tuple[Settings, bool]]:
    """Settings with a token and a migrated, seeded database (embedded without DATABASE_URL); is the token new."""
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
            print(f"smoke: starting embedded PostgreSQL in {STATE_DIR / 'pgdata'}", file=out)
            settings = settings.replace(database_url=embedded.start())
        assert settings.database_url is not None
        migrate(settings.database_url)
        seed(settings.database_url, settings.customer_scope(), settings.catalog)
        yield settings, generated_token
    finally:
        if embedded is not None:
            embedded.stop()


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.check import CheckOptions, SmokeCheck

    try:
        options = CheckOptions(
            base_url=args.base_url,
            token=args.token or settings.ops_bearer_token or "",
            manifest_id=args.manifest,
            region_id=args.region,
            tier_id=args.tier,
            message=args.message,
            timeout=args.timeout,
            keep=args.keep,
        )
    except ValueError as error:
        print(f"smoke check: {error}", file=sys.stderr)
        return EXIT_USAGE
    if (problem := _junit_path_problem(args.junit_xml)) is not None:
        print(f"smoke check: {problem}", file=sys.stderr)
        return EXIT_USAGE
    console = _stderr_console()
    check = SmokeCheck(options, observer=_progress(console))
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # the report says "interrupted"
        _run(_cancelled_by_sigterm(check.run()))
    return _report(check, args, console)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.check import CheckOptions, SmokeCheck
    from smoke.serving import free_port

    try:  # the stack's URL and token come later: check the rest before starting anything
        template = CheckOptions(
            base_url="http://127.0.0.1",
            token="-",  # noqa: S106  (a placeholder: the stack generates the token)
            message=args.message,
            timeout=args.timeout,
            poll_interval=0.25,
        )
    except ValueError as error:
        print(f"smoke demo: {error}", file=sys.stderr)
        return EXIT_USAGE
    if (problem := _junit_path_problem(args.junit_xml)) is not None:
        print(f"smoke demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if "LOG_LEVEL" not in os.environ:  # the progress lines are the demo's output; the stack's logs would bury them
        logging.getLogger().setLevel(logging.WARNING)
    console = _stderr_console()
    checks: list[SmokeCheck] = []

    async def check_against(url: str) -> None:
        assert stack_settings.ops_bearer_token is not None
        options = dataclasses.replace(template, base_url=url, token=stack_settings.ops_bearer_token)
        checks.append(SmokeCheck(options, observer=_progress(console)))
        console.print(f"smoke demo: the stack is up on {url}; running smoke check against it", soft_wrap=True)
        await _cancelled_by_sigterm(checks[0].run())

    with (
        _prepared_stack(settings, out=sys.stderr) as (stack_settings, _generated),
        contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),  # the report says "interrupted"
    ):
        _run(_run_stack(stack_settings, "127.0.0.1", free_port(), False, main=check_against))
    if not checks:
        return 130
    return _report(checks[0], args, console)


def _junit_path_problem(path: Path | None) -> str | None:
    if path is not None and not path.parent.is_dir():
        return f"--junit-xml {path}: the directory {path.parent} does not exist"
    return None


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def _progress(console: Console) -> ConsoleProgress:
    from smoke.check import ConsoleProgress

    return ConsoleProgress(console)


def _report(check: SmokeCheck, args: argparse.Namespace, console: Console) -> int:
    from smoke.check import emit_report

    return emit_report(check.report, console=console, json_output=args.json, junit_path=args.junit_xml)


async def _cancelled_by_sigterm(work: Awaitable[Any]) -> None:
    """Await ``work``; SIGTERM (a CI job cancelled) cancels it like Ctrl-C does, so that it cleans up first."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


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
    from smoke.preflight import preflight
    from smoke.worker import running_worker

    container = make_container(settings)
    try:
        await preflight(container)
        async with running_worker(container, settings, concurrency=concurrency):
            await _until_signalled()
    finally:
        await container.close()


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
    from smoke.api import create_app
    from smoke.bootstrap import make_container
    from smoke.preflight import preflight
    from smoke.serving import serve_asgi
    from smoke.simulators import create_cloud_simulator
    from smoke.worker import running_worker

    url = f"http://{host}:{port}"
    async with contextlib.AsyncExitStack() as stack:
        if settings.hetzner_api_token is None:
            simulator = create_cloud_simulator(agents=agents)
            cloud = await stack.enter_async_context(serve_asgi(simulator, host="127.0.0.1"))
            settings = settings.replace(
                hetzner_api_url=f"{cloud}/v1",
                hetzner_api_token="sim-token",  # noqa: S106  (the simulator's own token)
                agent_url_template=f"{cloud}/agents/{{provider_server_id}}",
                public_url=url,
                provision_poll_seconds=0.25,
            )
        container = make_container(settings)
        await stack.enter_async_context(serve_asgi(create_app(container), host=host, port=port))
        await preflight(container)
        await stack.enter_async_context(running_worker(container, settings))
        if main is not None:
            await main(url)
            return
        _print_banner(settings, url, generated_token)
        await _until_signalled()
    print("smoke: stopped")
