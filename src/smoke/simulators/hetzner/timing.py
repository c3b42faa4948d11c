"""How long actions and boots take: ``fast`` for tests and laptops, ``realistic`` for rehearsing against Hetzner.

Hetzner documents no durations; the ``realistic`` figures are what servers typically show (see
docs/simulated-cloud.md): ``create_server`` about 10 s, then ``start_server`` 1-2 s, the agent answering 20-40 s
after the server runs, ``delete_server`` about 5 s, power actions a few seconds, firewall actions about a second.
Each duration is drawn anew, uniformly within its range, for every action and every boot. ``fast`` uses one
fixed duration for every action and one for every boot, and draws nothing from the random generator, so a seeded
simulator draws its faults in the same order whatever the timing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ("ACTION_COMMANDS", "Seconds", "Timing")

ACTION_COMMANDS = (
    "create_server",
    "start_server",
    "stop_server",
    "shutdown_server",
    "reboot_server",
    "reset_server",
    "delete_server",
    "set_firewall_rules",
    "apply_firewall",
    "remove_firewall",
)


@dataclass(frozen=True, slots=True)
class Seconds:
    """A duration drawn uniformly from ``[low, high]``; a fixed one when they are equal."""

    low: float
    high: float

    @classmethod
    def fixed(cls, seconds: float) -> Seconds:
        return cls(seconds, seconds)

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per action command, and from a server's start until its agent answers."""

    actions: Mapping[str, Seconds]
    boot: Seconds

    @classmethod
    def named(cls, name: str, *, action_seconds: float | None = None, boot_seconds: float | None = None) -> Timing:
        """The ``fast`` or ``realistic`` timing; ``action_seconds`` and ``boot_seconds`` override what they name.

        Raises:
            ValueError: an unknown name or a negative duration.
        """
        if name not in _PROFILES:
            raise ValueError(f"unknown timing {name!r}: choose one of {', '.join(_PROFILES)}")
        if min(action_seconds or 0.0, boot_seconds or 0.0) < 0:
            raise ValueError("durations must not be negative")
        timing = _PROFILES[name]
        actions = (
            timing.actions if action_seconds is None else dict.fromkeys(ACTION_COMMANDS, Seconds.fixed(action_seconds))
        )
        boot = timing.boot if boot_seconds is None else Seconds.fixed(boot_seconds)
        return cls(actions, boot)

    def action_seconds(self, command: str, rng: random.Random) -> float:
        return self.actions[command].draw(rng)


_FAST = Timing(dict.fromkeys(ACTION_COMMANDS, Seconds.fixed(1.0)), Seconds.fixed(1.0))
_REALISTIC = Timing(
    {
        "create_server": Seconds(8.0, 12.0),
        "start_server": Seconds(1.0, 2.0),
        "stop_server": Seconds(1.0, 3.0),
        "shutdown_server": Seconds(3.0, 6.0),
        "reboot_server": Seconds(2.0, 4.0),
        "reset_server": Seconds(1.0, 3.0),
        "delete_server": Seconds(4.0, 6.0),
        "set_firewall_rules": Seconds(0.5, 1.5),
        "apply_firewall": Seconds(0.5, 1.5),
        "remove_firewall": Seconds(0.5, 1.5),
    },
    Seconds(20.0, 40.0),
)
_PROFILES = {"fast": _FAST, "realistic": _REALISTIC}
