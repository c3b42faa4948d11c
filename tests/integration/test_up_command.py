"""``smoke up`` with nothing configured: embedded PostgreSQL, the worker and the simulated cloud in one process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from smoke.serving import free_port

PROVISION = {"idempotency_key": "up-1", "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"}


def _wait_for_banner(process: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline, seen = time.monotonic() + timeout, []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if match := re.search(r"generated OPS_BEARER_TOKEN=(\S+)", line):
            return match.group(1)
        if process.poll() is not None:
            break
    raise AssertionError("smoke up printed no token:\n" + "".join(seen))


@pytest.mark.slow
def test_smoke_up_provisions_against_the_simulated_cloud_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "smoke", "up", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = _wait_for_banner(process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/internal/v1/smoke", timeout=10) as api:
            api.headers["Authorization"] = f"Bearer {token}"
            instance_id = api.post("/provision", json=PROVISION).json()["instance_id"]
            deadline = time.monotonic() + 60
            while api.get(f"/instances/{instance_id}").json().get("status") != "running":
                assert time.monotonic() < deadline, "the instance never reached running"
                time.sleep(0.2)
        children = psutil.Process(process.pid).children(recursive=True)

        process.send_signal(signal.SIGTERM)

        assert process.wait(30) == 0
        assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
