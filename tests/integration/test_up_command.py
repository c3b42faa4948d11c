"""``smoke up`` with nothing configured: embedded PostgreSQL, the worker and the simulated cloud in one process."""

from __future__ import annotations

import json
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


def _wait_for_banner(process: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """The generated token and the example ``curl`` command that ``smoke up`` printed."""
    deadline, seen, token = time.monotonic() + timeout, [], None
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if match := re.search(r"export OPS_BEARER_TOKEN=(\S+)", line):
            token = match.group(1)
        if token is not None and line.strip().startswith("curl "):
            return token, line.strip()
        if process.poll() is not None:
            break
    raise AssertionError("smoke up printed no token and curl example:\n" + "".join(seen))


def _pasted(command: str, token: str, cwd: Path) -> dict[str, object]:
    """What ``command`` prints when pasted into a shell whose environment holds the token."""
    environment = {"PATH": os.environ.get("PATH", ""), "OPS_BEARER_TOKEN": token}
    result = subprocess.run(
        ["bash", "-c", command + " --silent --show-error"], cwd=cwd, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.slow
def test_smoke_up_provisions_with_its_pasted_curl_example_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
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
        token, curl = _wait_for_banner(process)
        instance_id = _pasted(curl, token, tmp_path)["instance_id"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/internal/v1/smoke", timeout=10) as api:
            api.headers["Authorization"] = f"Bearer {token}"
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


@pytest.mark.slow
def test_smoke_up_on_the_data_of_an_older_postgresql_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".smoke" / "pgdata").mkdir(parents=True)
    (tmp_path / ".smoke" / "pgdata" / "PG_VERSION").write_text("16\n")
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}

    result = subprocess.run(
        [sys.executable, "-m", "smoke", "up", "--port", str(free_port())],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("smoke: embedded PostgreSQL: .smoke/pgdata holds a PostgreSQL 16 database")
    assert "remove the directory" in last
    assert "Traceback" not in result.stderr
