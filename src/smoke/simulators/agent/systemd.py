"""The part of a systemd service unit the process agents read: what to run, and whether to restart it.

From ``[Service]``: ``ExecStart`` (the last assignment wins, an empty one clears; the prefixes ``-@:+!`` are
dropped; words are split with shell quoting, as systemd's own splitting is close to it; no ``%`` specifiers),
``Restart`` (``no``, ``always``, ``on-success``, ``on-failure``, ``on-abnormal``, ``on-abort``; ``on-watchdog`` is
``no`` here), ``RestartSec`` (``3``, ``3s``, ``500ms``, ``1min``; default 100 ms), ``WorkingDirectory`` and
``Environment`` (``KEY=value`` words). Every other setting (``User``, the sandboxing ones such as
``ProtectSystem``, ``Type``, dependencies) is read past and not emulated. Lines may continue with a backslash;
``#`` and ``;`` start comments.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

__all__ = ("ServiceUnit", "UnitError", "parse_service_unit")

_RESTART_POLICIES = frozenset({"no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"})
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|msec|s|sec|m|min)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "msec": 0.001, "m": 60.0, "min": 60.0}


class UnitError(ValueError):
    """The unit cannot be run; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class ServiceUnit:
    exec_start: tuple[str, ...]
    restart: str = "no"
    restart_seconds: float = 0.1
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def restarts_after(self, returncode: int) -> bool:
        """Whether systemd restarts the service after its main process ended with ``returncode`` (<0: a signal)."""
        signalled, clean = returncode < 0, returncode == 0
        match self.restart:
            case "always":
                return True
            case "on-success":
                return clean
            case "on-failure":
                return not clean
            case "on-abnormal" | "on-abort":
                return signalled
        return False


def parse_service_unit(text: str) -> ServiceUnit:
    """The ``[Service]`` settings of a unit file.

    Raises:
        UnitError: no ``ExecStart``, one that cannot be split into words, or an unknown ``Restart``/``RestartSec``.
    """
    settings = _service_settings(text)
    exec_start: tuple[str, ...] = ()
    restart, restart_seconds, working_directory = "no", 0.1, None
    environment: dict[str, str] = {}
    for key, value in settings:
        if key == "ExecStart":
            exec_start = _command(value) if value else ()
        elif key == "Restart":
            if value not in _RESTART_POLICIES:
                raise UnitError(f"Restart={value} is not a restart policy")
            restart = "no" if value == "on-watchdog" else value
        elif key == "RestartSec":
            restart_seconds = _seconds(value)
        elif key == "WorkingDirectory":
            working_directory = value.lstrip("-") or None
        elif key == "Environment":
            environment.update(_assignments(value))
    if not exec_start:
        raise UnitError("the unit has no ExecStart")
    return ServiceUnit(exec_start, restart, restart_seconds, working_directory, environment)


def _service_settings(text: str) -> list[tuple[str, str]]:
    """``(key, value)`` of each setting in ``[Service]``, in order, continuation lines joined."""
    settings: list[tuple[str, str]] = []
    section, pending = "", ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def _command(value: str) -> tuple[str, ...]:
    try:
        words = shlex.split(value.lstrip("-@:+!"))
    except ValueError as error:
        raise UnitError(f"ExecStart cannot be split into words: {error}") from None
    return tuple(words)


def _seconds(value: str) -> float:
    if (found := _DURATION.match(value)) is None:
        raise UnitError(f"RestartSec={value} is not a duration this simulator reads")
    return float(found["number"]) * _UNIT_SECONDS[found["unit"]]


def _assignments(value: str) -> dict[str, str]:
    try:
        words = shlex.split(value)
    except ValueError as error:
        raise UnitError(f"Environment={value} cannot be split into words: {error}") from None
    return dict(word.split("=", 1) for word in words if "=" in word)
