"""The catalog file (``SMOKE_CATALOG``): TOML → a ``CatalogSpec``, every problem named on one line of its own.

The platform chooses its manifests, regions and tiers; smoke reads them from a TOML file at start (``tomllib``) and
``smoke up`` / ``smoke migrate --seed`` store them. ``catalog.example.toml`` in the repository is the built-in catalog
written as such a file, with every option explained.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from smoke.adapters.cloud_init import cloud_config
from smoke.domain.catalog import CatalogSpec
from smoke.domain.models import AgentKind, LlmBackend, Manifest

__all__ = ("CatalogFileError", "load_catalog")

_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SETTING: Final = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_ID_LENGTHS: Final = {"manifests": 100, "regions": 80, "tiers": 80}
_FIELDS: Final = {
    "regions": {"location"},
    "tiers": {"server_type"},
    "manifests": {"image", "agent", "agent_port", "user_data", "llm"},
}
_LLM_FIELDS: Final = ("provider", "base_url", "model", "api_key_setting")


class CatalogFileError(ValueError):
    """The file cannot be read or holds entries that are not a catalog; ``problems`` are one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_catalog(path: Path, environ: Mapping[str, str]) -> CatalogSpec:
    """The catalog of the file at ``path``; ``environ`` must hold every manifest's ``api_key_setting``.

    Raises:
        CatalogFileError: each problem as ``<file>: <entry>: <field>: <what is wrong>``.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogFileError([f"{path}: cannot be read: {error.strerror or error}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CatalogFileError([f"{path}: not valid TOML: {error}"]) from None
    reader = _Reader(path, environ)
    catalog = reader.catalog(document)
    if reader.problems:
        raise CatalogFileError(reader.problems)
    return catalog


class _Reader:
    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self._path = path
        self._environ = environ
        self.problems: list[str] = []

    def catalog(self, document: dict[str, Any]) -> CatalogSpec:
        for unknown in sorted(set(document) - set(_FIELDS)):
            self._problem(unknown, "unknown section: the catalog has [regions.<id>], [tiers.<id>], [manifests.<id>]")
        regions = {i: self._text(f"regions.{i}", e, "location") for i, e in self._entries(document, "regions")}
        tiers = {i: self._text(f"tiers.{i}", e, "server_type") for i, e in self._entries(document, "tiers")}
        manifests = {i: self._manifest(i, e) for i, e in self._entries(document, "manifests")}
        return CatalogSpec(manifests=manifests, regions=regions, tiers=tiers)

    def _entries(self, document: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
        table = document.get(section)
        if not isinstance(table, dict) or not table:
            self._problem(section, f"at least one [{section}.<id>] entry is needed")
            return []
        entries = []
        for entry_id, entry in table.items():
            where = f"{section}.{entry_id}"
            if not _ID.match(entry_id) or len(entry_id) > _ID_LENGTHS[section]:
                limit = _ID_LENGTHS[section]
                self._problem(where, f"the id must be 1..{limit} letters, digits, '.', '_' or '-'")
            elif not isinstance(entry, dict):
                self._problem(where, "must be a table")
            else:
                for unknown in sorted(set(entry) - _FIELDS[section]):
                    self._problem(where, f"{unknown}: unknown field (known: {', '.join(sorted(_FIELDS[section]))})")
                entries.append((entry_id, entry))
        return entries

    def _manifest(self, manifest_id: str, entry: dict[str, Any]) -> Manifest:
        where = f"manifests.{manifest_id}"
        image = entry.get("image")
        if isinstance(image, int) and not isinstance(image, bool) and image > 0:
            image = str(image)  # the numeric id of a snapshot
        elif not isinstance(image, str) or not image:
            self._problem(where, "image: must be an image name or the numeric id of a snapshot")
            image = ""
        agent = entry.get("agent", AgentKind.REFERENCE.value)
        if agent not in {kind.value for kind in AgentKind}:
            self._problem(where, f"agent: must be 'reference' or 'image', not {agent!r}")
            agent = AgentKind.REFERENCE.value
        port = entry.get("agent_port", 8080)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            self._problem(where, f"agent_port: must be a TCP port 1..65535, not {port!r}")
            port = 8080
        user_data = entry.get("user_data")
        if user_data is not None and not isinstance(user_data, str):
            self._problem(where, "user_data: must be a string of #cloud-config")
            user_data = None
        manifest = Manifest(manifest_id, image, AgentKind(agent), port, user_data, self._llm(where, entry.get("llm")))
        if manifest.llm is not None and manifest.agent is AgentKind.IMAGE:
            self._problem(where, "llm: only a manifest with agent = 'reference' has an llm backend")
        self._check_user_data(where, manifest)
        return manifest

    def _llm(self, where: str, llm: object) -> LlmBackend | None:
        if llm is None:
            return None
        where = f"{where}.llm"
        if not isinstance(llm, dict):
            self._problem(where, "must be a table")
            return None
        for unknown in sorted(set(llm) - set(_LLM_FIELDS)):
            self._problem(where, f"{unknown}: unknown field (known: {', '.join(_LLM_FIELDS)})")
        provider, base_url, model, setting = (self._text(where, llm, name) for name in _LLM_FIELDS)
        if base_url and not base_url.startswith(("http://", "https://")):
            self._problem(where, f"base_url: must be an http:// or https:// URL, not {base_url!r}")
        if setting and not _SETTING.match(setting):
            self._problem(where, f"api_key_setting: must name an environment variable, not {setting!r}")
        elif setting and not self._environ.get(setting):
            self._problem(where, f"api_key_setting: the environment variable {setting} is not set")
        return LlmBackend(provider, base_url.rstrip("/"), model, setting)

    def _check_user_data(self, where: str, manifest: Manifest) -> None:
        """Render the user data once, with stand-in secrets: what would fail for every instance fails here."""
        try:
            cloud_config(
                agent_config={"instance_id": "-", "agent_token": "-" * 43, "usage_url": "-", "manifest_id": "-"},
                agent=manifest.agent.value,
                agent_port=manifest.agent_port,
                extra_user_data=manifest.user_data,
            )
        except ValueError as error:
            self._problem(where, f"user_data: {error}")

    def _text(self, where: str, entry: dict[str, Any], name: str) -> str:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            self._problem(where, f"{name}: required, a non-empty string")
            return ""
        return value

    def _problem(self, where: str, what: str) -> None:
        self.problems.append(f"{self._path}: {where}: {what}")
