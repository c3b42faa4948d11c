"""Settings (the README's "Configuration"): typed, validated, read once by an entry point from the environment."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar
from uuid import UUID

from dotenv import dotenv_values

from smoke.catalog_file import CatalogFileError, load_catalog
from smoke.domain.catalog import SEEDED_CATALOG, CatalogSpec
from smoke.domain.models import CustomerScope

__all__ = ("Settings", "SettingsError")

T = TypeVar("T")

DEFAULT_CUSTOMER_ID: Final = UUID("00000000-0000-4000-8000-00000000c001")
DEFAULT_TENANT_ID: Final = UUID("00000000-0000-4000-8000-00000000e001")
DEFAULT_SUBSCRIPTION_ID: Final = UUID("00000000-0000-4000-8000-00000000b001")
AGENT_URL_FIELDS: Final = frozenset({"ipv4", "hostname", "instance_id", "provider_server_id"})


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable (one line per problem)."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__("\n".join(f"{variable}: {line}" for line in problem.splitlines()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything configurable, with the defaults ``smoke up`` runs on."""

    ops_bearer_token: str | None = None
    """``OPS_BEARER_TOKEN``: the bearer token CI presents to the smoke API."""
    database_url: str | None = None
    """``DATABASE_URL``: ``postgresql://user:password@host:port/db``; unset means embedded PostgreSQL (``smoke up``)."""
    queue_url: str | None = None
    """``QUEUE_URL``: ``redis://...`` for a Redis queue; unset means the database also holds the queue."""
    hetzner_api_token: str | None = None
    """``HETZNER_API_TOKEN``: a Hetzner Cloud project token; unset means the simulated cloud (``smoke up``)."""
    hetzner_api_url: str = "https://api.hetzner.cloud/v1"
    """``HETZNER_API_URL``."""
    customer_id: UUID = DEFAULT_CUSTOMER_ID
    """``SMOKE_CUSTOMER_ID``: the one customer smoke acts for."""
    tenant_id: UUID = DEFAULT_TENANT_ID
    """``SMOKE_TENANT_ID``."""
    subscription_id: UUID = DEFAULT_SUBSCRIPTION_ID
    """``SMOKE_SUBSCRIPTION_ID``."""
    agent_url_template: str = "http://{ipv4}:8080"
    """``AGENT_URL_TEMPLATE``: the agent's base URL, from ``{ipv4}``, ``{hostname}``, ``{instance_id}``,
    ``{provider_server_id}``."""
    public_url: str = "http://127.0.0.1:8000"
    """``PUBLIC_URL``: where agents reach this API (their usage reports go to ``/internal/v1/agent/usage-events``)."""
    agent_token_secret: str | None = None
    """``AGENT_TOKEN_SECRET``: the key agent tokens are derived from, so only their digests are stored."""
    max_live_instances: int = 10
    """``SMOKE_MAX_LIVE_INSTANCES``: the spend guard."""
    instance_ttl_seconds: int = 3600
    """``SMOKE_INSTANCE_TTL_SECONDS``: reconcile soft-deletes instances older than this."""
    provision_timeout_seconds: int = 600
    """``PROVISION_TIMEOUT_SECONDS``: a provision not running by then fails and its server is deleted."""
    provision_poll_seconds: float = 2.0
    """``PROVISION_POLL_SECONDS``: how often a provision job asks its agent; its first wait to read its server."""
    job_heartbeat_seconds: int = 30
    """``JOB_HEARTBEAT_SECONDS``: a job silent this long is taken for dead and retried."""
    queue_sweep_seconds: int = 10
    """``QUEUE_SWEEP_SECONDS``: how often a worker looks for jobs whose worker died."""
    chat_turn_timeout_seconds: int = 300
    """``CHAT_TURN_TIMEOUT_SECONDS``: a chat turn still streaming after this ends with an ``error`` event."""
    sse_keepalive_seconds: float = 15.0
    """``SSE_KEEPALIVE_SECONDS``: a ``: keep-alive`` comment is sent after this much upstream silence."""
    header_timeout_seconds: float = 10.0
    """``HEADER_TIMEOUT_SECONDS``: a connection whose request headers are not all in by then is answered 408."""
    catalog: CatalogSpec = SEEDED_CATALOG
    """``SMOKE_CATALOG``: a TOML file of manifests, regions and tiers (see ``catalog.example.toml``); else built in."""
    llm_api_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The values of the variables the catalog's ``llm`` backends name in ``api_key_setting``."""
    hetzner_ssh_keys: tuple[str, ...] = ()
    """``HETZNER_SSH_KEYS``: names or ids of the project's SSH keys, comma-separated, installed on every server."""
    agent_allowed_cidrs: tuple[str, ...] = ()
    """``AGENT_ALLOWED_CIDRS``: the only ranges a smoke firewall lets reach the agent port; unset, no firewall."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """``LOG_LEVEL``."""
    log_format: Literal["json", "console"] = "console"
    """``LOG_FORMAT``."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> Settings:
        """Read the settings from ``environ`` (default: the process environment) over the ``.env`` file.

        Raises:
            SettingsError: a variable is malformed.
        """
        values = {k: v for k, v in (dotenv_values(dotenv) if dotenv and dotenv.is_file() else {}).items() if v}
        values |= {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
        read, defaults = _Reader(values), cls()
        catalog = read.value("SMOKE_CATALOG", lambda raw: _catalog(raw, values), SEEDED_CATALOG)
        return cls(
            ops_bearer_token=read.optional("OPS_BEARER_TOKEN", _token),
            database_url=read.optional("DATABASE_URL", _postgres_url),
            queue_url=read.optional("QUEUE_URL", _queue_url),
            hetzner_api_token=read.optional("HETZNER_API_TOKEN", _token),
            hetzner_api_url=read.value("HETZNER_API_URL", _http_url, defaults.hetzner_api_url),
            customer_id=read.value("SMOKE_CUSTOMER_ID", UUID, DEFAULT_CUSTOMER_ID),
            tenant_id=read.value("SMOKE_TENANT_ID", UUID, DEFAULT_TENANT_ID),
            subscription_id=read.value("SMOKE_SUBSCRIPTION_ID", UUID, DEFAULT_SUBSCRIPTION_ID),
            agent_url_template=read.value("AGENT_URL_TEMPLATE", _agent_url_template, defaults.agent_url_template),
            public_url=read.value("PUBLIC_URL", _http_url, defaults.public_url),
            agent_token_secret=read.optional("AGENT_TOKEN_SECRET", _token),
            max_live_instances=read.value("SMOKE_MAX_LIVE_INSTANCES", _positive_int, defaults.max_live_instances),
            instance_ttl_seconds=read.value("SMOKE_INSTANCE_TTL_SECONDS", _positive_int, defaults.instance_ttl_seconds),
            provision_timeout_seconds=read.value(
                "PROVISION_TIMEOUT_SECONDS", _positive_int, defaults.provision_timeout_seconds
            ),
            provision_poll_seconds=read.value(
                "PROVISION_POLL_SECONDS", _positive_float, defaults.provision_poll_seconds
            ),
            job_heartbeat_seconds=read.value("JOB_HEARTBEAT_SECONDS", _positive_int, defaults.job_heartbeat_seconds),
            queue_sweep_seconds=read.value("QUEUE_SWEEP_SECONDS", _positive_int, defaults.queue_sweep_seconds),
            chat_turn_timeout_seconds=read.value(
                "CHAT_TURN_TIMEOUT_SECONDS", _positive_int, defaults.chat_turn_timeout_seconds
            ),
            sse_keepalive_seconds=read.value("SSE_KEEPALIVE_SECONDS", _positive_float, defaults.sse_keepalive_seconds),
            header_timeout_seconds=read.value(
                "HEADER_TIMEOUT_SECONDS", _positive_float, defaults.header_timeout_seconds
            ),
            catalog=catalog,
            llm_api_keys={
                m.llm.api_key_setting: values[m.llm.api_key_setting] for m in catalog.manifests.values() if m.llm
            },
            hetzner_ssh_keys=read.value("HETZNER_SSH_KEYS", _names, ()),
            agent_allowed_cidrs=read.value("AGENT_ALLOWED_CIDRS", _cidrs, ()),
            log_level=read.value("LOG_LEVEL", _log_level, "INFO"),
            log_format=read.value("LOG_FORMAT", _log_format, "console"),
        )

    def require(self, *variables: str) -> None:
        """Raise ``SettingsError`` naming every one of ``variables`` that is unset, and how to make a secret."""
        missing = [variable for variable in variables if getattr(self, _FIELD_OF[variable]) is None]
        if missing:
            hint = f" (make a secret with: {_RANDOM_STRING_RECIPE})" if _SECRETS.intersection(missing) else ""
            raise SettingsError(", ".join(missing), f"required by this command but not set{hint}")

    def required(self, variable: str) -> str:
        """The value of ``variable`` (one of ``require``'s); ``SettingsError`` if it is unset."""
        self.require(variable)
        value: str = getattr(self, _FIELD_OF[variable])
        return value

    def customer_scope(self) -> CustomerScope:
        return CustomerScope(self.customer_id, self.tenant_id, self.subscription_id)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_RANDOM_STRING_RECIPE: Final = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_SECRETS: Final = frozenset({"OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET"})
"""The settings that are random strings of the operator's own making (unlike the Hetzner token or a URL)."""

_FIELD_OF: Final = {
    "OPS_BEARER_TOKEN": "ops_bearer_token",
    "DATABASE_URL": "database_url",
    "QUEUE_URL": "queue_url",
    "HETZNER_API_TOKEN": "hetzner_api_token",
    "AGENT_TOKEN_SECRET": "agent_token_secret",
}


class _Reader:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def optional(self, variable: str, parse: Callable[[str], T]) -> T | None:
        raw = self._values.get(variable)
        return None if raw is None else self._parse(variable, raw, parse)

    def value(self, variable: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._values.get(variable)
        return default if raw is None else self._parse(variable, raw, parse)

    @staticmethod
    def _parse(variable: str, raw: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(raw.strip())
        except ValueError as error:
            raise SettingsError(variable, str(error) or "malformed") from None


def _token(raw: str) -> str:
    if not raw.isascii() or any(c in string.whitespace for c in raw):
        raise ValueError("must be printable ASCII without spaces")
    return raw


def _postgres_url(raw: str) -> str:
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+asyncpg") or not rest:
        raise ValueError("must be a postgresql:// URL")
    return "postgresql://" + rest


def _queue_url(raw: str) -> str:
    if raw.startswith(("redis://", "rediss://")):
        return raw
    return _postgres_url(raw)


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw) <= len("https://"):
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def _agent_url_template(raw: str) -> str:
    fields = {name for _, name, _, _ in string.Formatter().parse(raw) if name is not None}
    if unknown := fields - AGENT_URL_FIELDS:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; use {', '.join(sorted(AGENT_URL_FIELDS))}")
    return _http_url(raw)


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be a positive integer, got '{raw}'") from None
    if value < 1:
        raise ValueError(f"must be a positive integer, got '{raw}'")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a positive number, got '{raw}'") from None
    if not value > 0:
        raise ValueError(f"must be a positive number, got '{raw}'")
    return value


def _catalog(raw: str, environ: Mapping[str, str]) -> CatalogSpec:
    try:
        return load_catalog(Path(raw), environ)
    except CatalogFileError as error:
        raise ValueError(str(error)) from None


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(","))
    if not all(names):
        raise ValueError("must be comma-separated names or ids, none of them empty")
    return names


def _cidrs(raw: str) -> tuple[str, ...]:
    """Networks in CIDR notation, normalised (``10.0.0.1/8`` is refused: its host bits are set)."""
    try:
        return tuple(str(ipaddress.ip_network(cidr.strip())) for cidr in raw.split(","))
    except ValueError as error:
        raise ValueError(f"must be comma-separated networks like 203.0.113.0/24 or 2001:db8::/32 ({error})") from None


def _log_level(raw: str) -> Literal["DEBUG", "INFO", "WARNING", "ERROR"]:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level  # type: ignore[return-value]


def _log_format(raw: str) -> Literal["json", "console"]:
    if raw not in ("json", "console"):
        raise ValueError("must be json or console")
    return raw  # type: ignore[return-value]
