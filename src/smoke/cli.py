"""The ``smoke`` command line: parsing only; the commands run in ``smoke.stack`` (the server side) and ``smoke.check``.

Nothing heavy is imported until a command needs it, so that ``smoke check`` in CI loads no server code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from smoke.observability import configure_logging
from smoke.preflight import AccountRefused
from smoke.process import StartupFailed
from smoke.process import run as _run
from smoke.process import until_signalled as _until_signalled
from smoke.settings import Settings, SettingsError

__all__ = ("main",)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    except StartupFailed as error:
        print(f"smoke: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


class _HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none worth showing (None, a flag) or says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS) or "default" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)".lstrip()


class _Parser(argparse.ArgumentParser):
    """Each command's parser: every option's help shows its default, also an option given no help text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("help") is None and kwargs.get("default") not in (None, False):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smoke",
        description="Prove that an agent VPS can be provisioned on Hetzner Cloud, chatted with, metered and cleaned "
        "up: the control plane (up, serve, worker, migrate), the CI scenario (check, demo), the simulated cloud.",
        epilog="Exit codes: 0 done; 1 failed (smoke check: a step failed; the others: could not start, said in one "
        "line); 2 bad usage or configuration; 130 interrupted. Settings come from the environment and ./.env. "
        "`smoke COMMAND --help` shows a command's options and their defaults.",
    )
    parser.add_argument("--version", action="version", version=f"smoke {version('smoke')}")
    commands = parser.add_subparsers(required=True, metavar="command", parser_class=_Parser)

    up = commands.add_parser(
        "up",
        help="the whole stack in one process, on embedded defaults",
        description="Embedded PostgreSQL in ./.smoke/ (unless DATABASE_URL is set), migrations, seed data, the API, "
        "the worker, and the simulated cloud (unless HETZNER_API_TOKEN is set), until Ctrl-C or SIGTERM.",
    )
    up.add_argument("--host", default="127.0.0.1", help="the address the API listens on")
    up.add_argument("--port", type=int, default=8000, help="the API's port")
    _add_agents_argument(up)
    up.set_defaults(run=_up)

    demo = commands.add_parser(
        "demo",
        help="smoke up on free ports, smoke check against it, stop; the check's exit code",
        description="The stack on a free port with throwaway state of its own (a temporary embedded PostgreSQL, "
        "removed afterwards; never the ./.smoke/ of smoke up), smoke check against it, then a clean stop.",
    )
    _add_check_arguments(demo)
    _add_agents_argument(demo)
    demo.set_defaults(run=_demo)

    check = commands.add_parser(
        "check",
        help="the CI scenario against a smoke API: exit 0 passed, 1 a step failed, 2 bad usage or configuration",
        description="Provision, poll, wait for running, chat, count the LLM usage, delete, wait for deleted. "
        "Progress goes to stderr; --json writes the result to stdout. A failed step says why in one line, with the "
        "instance's last reason. A provision answered 5xx or lost is retried with the same idempotency key; what "
        "the key stands for is deleted in the end. Exit codes: 0 every step passed, 1 a step failed (an unreachable "
        "API too), 2 bad usage or configuration (missing or refused token, malformed URL, unknown catalog id), 130 "
        "interrupted (after deleting what it created).",
    )
    check.add_argument("--base-url", required=True, help="the smoke API, e.g. http://127.0.0.1:8000")
    check.add_argument("--token", help="the ops bearer token (default: $OPS_BEARER_TOKEN)")
    check.add_argument("--manifest", default="agent-default", help="the catalog's manifest id")
    check.add_argument("--region", default="fsn1", help="the catalog's region id")
    check.add_argument("--tier", default="small", help="the catalog's tier id")
    check.add_argument("--keep", action="store_true", help="leave the instance in place (no delete steps)")
    _add_check_arguments(check)
    check.set_defaults(run=_check)

    serve = commands.add_parser("serve", help="the API (needs DATABASE_URL, OPS_BEARER_TOKEN and AGENT_TOKEN_SECRET)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="the job worker (needs DATABASE_URL, HETZNER_API_TOKEN and AGENT_TOKEN_SECRET)"
    )
    worker.add_argument("--concurrency", type=int, default=10, help="jobs run at once")
    worker.add_argument("--metrics-host", default="127.0.0.1", help="the address /metrics and /healthz listen on")
    worker.add_argument(
        "--metrics-port", type=_port, default=9100, help="the port of /metrics and /healthz; 0 serves neither"
    )
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
        "port",
    )
    simulate.set_defaults(run=_simulate_cloud)

    agent = commands.add_parser("agent", help="the reference agent (docs/api.md), run as an agent VPS runs it")
    agent.add_argument("--config", required=True, metavar="PATH", help="the agent's JSON configuration")
    agent.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104  (as on a server: smoke reaches it from outside)
        help="the address to listen on",
    )
    agent.add_argument("--port", type=int, default=8080, help="the port to listen on")
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


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", default="hello from smoke check", help="the chat message, 1..4000 characters")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole scenario")
    parser.add_argument("--junit-xml", type=_junit_path, metavar="PATH", help="also write a JUnit XML report here")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")


def _junit_path(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {path.parent} does not exist")
    return path


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"not a port number: {port} (0..65535)")
    return port


def _add_agents_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agents",
        choices=("inline", "process"),
        default="inline",
        help="the simulated cloud's agents: in-process echo agents, or each server's user data carried out and its "
        "service (smoke's reference agent) run as a real process (see smoke simulate-cloud)",
    )


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from smoke import stack

    stack.up(settings, args.host, args.port, agents=args.agents)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from smoke import stack
    from smoke.check import CheckOptions, emit_report, stderr_console

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
    if "LOG_LEVEL" not in os.environ:  # the progress lines are the demo's output; the stack's logs would bury them
        logging.getLogger().setLevel(logging.WARNING)
    console = stderr_console()
    report = stack.demo(settings, template, console, agents=args.agents)
    if report is None:
        return EXIT_INTERRUPTED
    return emit_report(report, console=console, json_output=args.json, junit_path=args.junit_xml)


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from smoke.check import CheckOptions
    from smoke.check.command import run_check

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
    return run_check(options, json_output=args.json, junit_path=args.junit_xml)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET")
    from smoke import stack

    stack.serve(settings, args.host, args.port)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL", "HETZNER_API_TOKEN", "AGENT_TOKEN_SECRET")
    from smoke import stack

    stack.work(settings, args.concurrency, metrics_host=args.metrics_host, metrics_port=args.metrics_port)
    return 0


def _catalog_check(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("HETZNER_API_TOKEN")
    from smoke import stack

    problems = stack.catalog_problems(settings)
    for problem in problems:
        print(f"smoke catalog check: {problem}")
    if not problems:
        entries = sum(map(len, (settings.catalog.regions, settings.catalog.tiers, settings.catalog.manifests)))
        print(f"smoke catalog check: all {entries} entries can be ordered")
    return 1 if problems else 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("DATABASE_URL")
    from smoke import stack

    stack.migrate_database(settings, with_seed=args.seed)
    print("smoke: database migrated" + (" and seeded" if args.seed else ""))
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
