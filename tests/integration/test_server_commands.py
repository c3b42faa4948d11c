"""``smoke serve`` and ``smoke worker`` as processes: what they serve, and how they refuse to start (one line)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smoke.serving import free_port


def worker_settings(cloud_url: str) -> dict[str, str]:
    """A worker's settings but the database: the simulated cloud, whose account check passes."""
    return {"HETZNER_API_URL": f"{cloud_url}/v1", "HETZNER_API_TOKEN": "sim-token", "AGENT_TOKEN_SECRET": "s"}


def environment(cwd: Path, **settings: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "LOG_LEVEL": "WARNING"} | settings


def smoke(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "smoke", *args]
    env = environment(cwd, **settings)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def running(*args: str, cwd: Path, **settings: str) -> Iterator[subprocess.Popen[str]]:
    """``smoke <args>`` as a process while the block runs (its output piped, for ``_when_answering``); then killed."""
    command = [sys.executable, "-m", "smoke", *args]
    env = environment(cwd, **settings)
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.slow
def test_serve_on_a_busy_port_exits_1_with_one_line(busy_port: int, clean_database: str, tmp_path: Path) -> None:
    settings = {"DATABASE_URL": clean_database, "OPS_BEARER_TOKEN": "t", "AGENT_TOKEN_SECRET": "s"}

    result = smoke("serve", "--port", str(busy_port), cwd=tmp_path, **settings)

    assert result.returncode == 1
    assert (
        result.stderr
        == f"smoke: cannot listen on 127.0.0.1:{busy_port}: Address already in use; choose another --port\n"
    )


@pytest.mark.slow  # the queue's pool gives up after 5 s
async def test_a_worker_whose_database_is_down_exits_1_with_one_line_naming_it(
    cloud_url: str, cloud: httpx.AsyncClient, tmp_path: Path
) -> None:
    closed = f"postgresql://smoke:secret-password@127.0.0.1:{free_port()}/smoke"
    settings = worker_settings(cloud_url) | {"DATABASE_URL": closed}

    result = await asyncio.to_thread(smoke, "worker", cwd=tmp_path, **settings)  # the loop serves the cloud meanwhile

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"smoke: cannot reach the queue at postgresql://127.0.0.1:{closed.rsplit(':', 1)[1]} (DATABASE_URL): "
    )
    assert "Traceback" not in result.stderr
    assert "secret-password" not in result.stderr


def test_serve_and_worker_name_every_missing_setting_at_once(tmp_path: Path) -> None:
    result = smoke("worker", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith(
        "smoke: DATABASE_URL, HETZNER_API_TOKEN, AGENT_TOKEN_SECRET: required by this command but not set (make a "
        "secret with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )


@pytest.mark.slow
async def test_a_worker_serves_its_metrics_and_health_until_sigterm(
    cloud_url: str, cloud: httpx.AsyncClient, clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = {"DATABASE_URL": clean_database, **worker_settings(cloud_url)}
    with running("worker", "--metrics-port", str(port), cwd=tmp_path, **settings) as process:
        health = await _when_answering(f"http://127.0.0.1:{port}/healthz", process)
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")

        process.send_signal(signal.SIGTERM)

        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE smoke_jobs_total counter" in metrics.text
        assert "# TYPE smoke_job_seconds histogram" in metrics.text
        assert await asyncio.to_thread(process.wait, 30) == 0


async def _when_answering(url: str, process: subprocess.Popen[str], timeout: float = 30) -> httpx.Response:
    """The first answer of ``url``, polled while the loop keeps serving (the simulated cloud the process calls)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                return await client.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answered {url} within {timeout} s")


@pytest.mark.slow
async def test_serve_answers_headers_not_in_after_header_timeout_seconds_with_408(
    clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = {"DATABASE_URL": clean_database, "OPS_BEARER_TOKEN": "t", "AGENT_TOKEN_SECRET": "s"}
    with running("serve", "--port", str(port), cwd=tmp_path, HEADER_TIMEOUT_SECONDS="0.5", **settings) as process:
        await _when_answering(f"http://127.0.0.1:{port}/healthz", process)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        answer = await asyncio.wait_for(reader.read(-1), timeout=5)
        waited = time.monotonic() - started
        writer.close()

        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < waited < 3  # the setting's 0.5 s, not the default 10 s
