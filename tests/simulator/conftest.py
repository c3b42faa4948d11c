"""The simulated cloud as users run it: ``smoke simulate-cloud`` in a process of its own, on uvloop.

``simulate_cloud(*flags)`` starts one on a free port and stops it (SIGTERM) at the end of the test or module that
asked for it; ``cloud`` is a shared fast one, reset (no servers, keys, firewalls or faults) before each test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from smoke.serving import free_port

TOKEN = "sim-token"
FAST = ("--action-seconds", "0.2", "--boot-seconds", "0.2", "--token-delay-ms", "1")


@dataclass(frozen=True)
class SimulatedCloud:
    """A running ``smoke simulate-cloud``: its base URL and a client of its control API."""

    url: str
    control: httpx.Client

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        self.control.post("/_sim/reset").raise_for_status()

    def set_faults(self, **hetzner: Any) -> dict[str, Any]:
        response = self.control.put("/_sim/faults", json={"hetzner": hetzner})
        assert response.status_code == 200, response.text
        faults: dict[str, Any] = response.json()
        return faults

    def servers(self) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = self.control.get("/_sim/state").json()["servers"]
        return servers


@contextlib.contextmanager
def simulated_cloud_process(*flags: str) -> Iterator[SimulatedCloud]:
    """``python -m smoke simulate-cloud --port <free> *flags``, answering, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "smoke", "simulate-cloud", "--port", str(port), *flags]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HETZNER_", "DATABASE_"))}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as control:
            _wait_until_answering(control, process)
            yield SimulatedCloud(url, control)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_until_answering(control: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"smoke simulate-cloud exited with {process.returncode}: {stderr}")
        with contextlib.suppress(httpx.TransportError):
            if control.get("/_sim/faults").status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("smoke simulate-cloud did not answer within 30 s")


@pytest.fixture
def simulate_cloud() -> Iterator[Callable[..., SimulatedCloud]]:
    """Start a ``smoke simulate-cloud`` with the given flags; every one started is stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda *flags: stack.enter_context(simulated_cloud_process(*flags))


@pytest.fixture(scope="module")
def shared_cloud() -> Iterator[SimulatedCloud]:
    with simulated_cloud_process(*FAST) as cloud:
        yield cloud


@pytest.fixture
def cloud(shared_cloud: SimulatedCloud) -> SimulatedCloud:
    """A fast simulated cloud in a process of its own (actions and boots 0.2 s), reset before the test."""
    shared_cloud.reset()
    return shared_cloud
