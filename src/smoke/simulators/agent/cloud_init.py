"""What cloud-init makes of a server's user data, for the process agents: the files it writes, the commands it runs.

A real server's cloud-init reads ``#cloud-config`` YAML, writes its ``write_files`` early in boot and runs its
``runcmd`` at the end of the first boot. :func:`parse_cloud_config` reads the same document with a YAML library
(as cloud-init does) and decodes each file's bytes; :func:`systemctl_starts` reads ``runcmd`` for the only
commands the simulator carries out, ``systemctl``'s.

``write_files`` items: ``path`` (made absolute against ``/``), ``content`` (a string, or bytes given as
``!!binary``), ``encoding`` as cloud-init names them (``b64``/``base64``; ``gz``/``gzip``;
``gz+b64``/``gz+base64``/``gzip+b64``/``gzip+base64``; anything else is plain text, as cloud-init assumes after a
warning), ``permissions`` (an octal string such as ``'0600'``, or the integer YAML 1.1 makes of ``0600``; default
0644), ``append`` and ``defer`` (deferred files are written after the others, still before ``runcmd``, as
cloud-init's ``write_files_deferred`` runs before ``scripts_user``). ``owner`` is ignored (every file belongs to
whoever runs the simulator); ``source`` (a URL to download) is refused.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
import shlex
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = (
    "CloudConfig",
    "CloudConfigError",
    "SystemctlStart",
    "WriteFile",
    "parse_cloud_config",
    "systemctl_starts",
)

HEADER = "#cloud-config"
DEFAULT_PERMISSIONS = 0o644

_BASE64 = frozenset({"b64", "base64"})
_GZIP = frozenset({"gz", "gzip"})
_GZIP_BASE64 = frozenset({"gz+b64", "gz+base64", "gzip+b64", "gzip+base64"})


class CloudConfigError(ValueError):
    """The user data cannot be carried out as cloud-init would; the message says which part, in one line."""


@dataclass(frozen=True, slots=True)
class WriteFile:
    """One ``write_files`` item, decoded: ``path`` is absolute and normalised (no ``..`` left in it)."""

    path: str
    content: bytes
    permissions: int
    append: bool
    defer: bool


@dataclass(frozen=True, slots=True)
class CloudConfig:
    """The parts of a ``#cloud-config`` the process agents carry out. ``runcmd`` entries are argument lists."""

    write_files: tuple[WriteFile, ...]
    runcmd: tuple[tuple[str, ...], ...]

    def files_in_order(self) -> list[WriteFile]:
        """The files in the order cloud-init writes them: the others first, then the deferred ones."""
        return [f for f in self.write_files if not f.defer] + [f for f in self.write_files if f.defer]


@dataclass(frozen=True, slots=True)
class SystemctlStart:
    """A ``systemctl`` command of ``runcmd``: the units it enables, and whether it starts them now."""

    units: tuple[str, ...]
    enable: bool
    now: bool


def parse_cloud_config(user_data: str | None) -> CloudConfig | None:
    """The cloud-config in ``user_data``; None when there is none (no user data, or not ``#cloud-config``).

    Raises:
        CloudConfigError: a ``#cloud-config`` that is not valid YAML, not a mapping, or with a ``write_files`` or
            ``runcmd`` cloud-init could not carry out.
    """
    if user_data is None or not user_data.startswith(HEADER):
        return None
    try:
        document = yaml.safe_load(user_data)
    except yaml.YAMLError as error:
        raise CloudConfigError(f"the user data is not valid YAML: {' '.join(str(error).split())}") from None
    if document is None:
        return CloudConfig((), ())
    if not isinstance(document, dict):
        raise CloudConfigError("the cloud-config is not a mapping")
    files = document.get("write_files") or []
    commands = document.get("runcmd") or []
    if not isinstance(files, list) or not isinstance(commands, list):
        raise CloudConfigError("write_files and runcmd must be lists")
    return CloudConfig(
        tuple(_write_file(index, item) for index, item in enumerate(files)),
        tuple(_command(index, entry) for index, entry in enumerate(commands)),
    )


def systemctl_starts(command: Sequence[str]) -> SystemctlStart | None:
    """What ``command`` asks of systemd if it is ``systemctl enable [--now]``, ``start`` or ``restart``; else None.

    ``systemctl daemon-reload`` and any other command give None: there is nothing to do for them here.
    """
    if not command or os.path.basename(command[0]) != "systemctl":
        return None
    words = [word for word in command[1:] if word not in ("--no-block", "-q", "--quiet", "--no-reload")]
    verb, arguments = (words[0], words[1:]) if words else ("", [])
    now = "--now" in arguments
    units = tuple(_unit_name(word) for word in arguments if not word.startswith("-"))
    if verb == "enable" and units:
        return SystemctlStart(units, enable=True, now=now)
    if verb in ("start", "restart") and units:
        return SystemctlStart(units, enable=False, now=True)
    return None


def _unit_name(word: str) -> str:
    return word if "." in word else f"{word}.service"


def _write_file(index: int, item: Any) -> WriteFile:
    where = f"write_files[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
        raise CloudConfigError(f"{where} has no path")
    if "source" in item:
        raise CloudConfigError(f"{where} ({item['path']}): a 'source' to download is not supported")
    path = os.path.normpath(os.path.join("/", item["path"]))
    return WriteFile(
        path=path,
        content=_decoded(where, path, item.get("content", ""), item.get("encoding")),
        permissions=_permissions(where, path, item.get("permissions")),
        append=bool(item.get("append", False)),
        defer=bool(item.get("defer", False)),
    )


def _decoded(where: str, path: str, content: Any, encoding: Any) -> bytes:
    """The file's bytes, as cloud-init's ``decode_perms``/``extract_contents`` make them."""
    raw = content if isinstance(content, bytes) else str(content if content is not None else "").encode()
    kind = str(encoding or "").strip().lower()
    try:
        if kind in _BASE64 or kind in _GZIP_BASE64:
            raw = base64.b64decode(raw, validate=False)
        if kind in _GZIP or kind in _GZIP_BASE64:
            raw = gzip.decompress(raw)
    except (binascii.Error, OSError, EOFError, zlib.error) as error:
        raise CloudConfigError(f"{where} ({path}): cannot decode its {kind} content: {error}") from None
    return raw


def _permissions(where: str, path: str, value: Any) -> int:
    if value is None:
        return DEFAULT_PERMISSIONS
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value).strip().lower().removeprefix("0o"), 8)
        except ValueError:
            raise CloudConfigError(f"{where} ({path}): permissions {value!r} are not octal") from None
    if not 0 <= mode <= 0o7777:
        raise CloudConfigError(f"{where} ({path}): permissions {value!r} are out of range")
    return mode


def _command(index: int, entry: Any) -> tuple[str, ...]:
    """A ``runcmd`` entry as arguments: a list as it is, a string split as ``sh`` would split its words."""
    if isinstance(entry, list):
        return tuple(str(word) for word in entry)
    if isinstance(entry, str):
        try:
            return tuple(shlex.split(entry))
        except ValueError as error:
            raise CloudConfigError(f"runcmd[{index}] cannot be split into words: {error}") from None
    raise CloudConfigError(f"runcmd[{index}] is neither a list nor a string")
