"""Process agents (``--agents process``): each booted server does what its user data says, on this machine.

When a server has booted (``running`` and its boot time passed, as for the inline agents), it gets a directory of
its own, ``<state dir>/servers/<server id>/``, that stands for its disk: cloud-init's first boot is carried out
there (:mod:`.cloud_init`): every ``write_files`` item is written under that directory (``/etc/x`` becomes
``<root>/etc/x``), with its permissions; then ``runcmd`` is read for ``systemctl enable [--now]``, ``start`` and
``restart``. The first unit so started is the server's service; its unit file is read from the re-rooted tree
(``/etc/systemd/system``, ``/run/systemd/system``, ``/lib/systemd/system``, ``/usr/lib/systemd/system``;
:mod:`.systemd`) and its ``ExecStart`` run as a real process:

- the program: a file the user data wrote (re-rooted), else ``python3``/``python3.X`` (``/usr/bin/python3`` on a
  stock Ubuntu) is this simulator's own interpreter, ``sys.executable``; anything else is refused. Options such as
  ``-I`` stay as the unit gives them, so the reference agent runs isolated, but ``sys.executable``'s own
  site-packages are visible to it, where a bare server has none (``tests/agent`` proves it needs none);
- every argument that is an absolute path existing under the root (also the value of ``--opt=/path``) is
  re-rooted; other paths stay as they are;
- ``--port N`` (or ``--port=N``) becomes a free loopback port chosen anew at each start, and ``--host`` is set to
  ``127.0.0.1`` (added before ``--port`` when absent): the convention of the reference agent's command line. A
  service without ``--port`` is refused: the simulator could not know where it listens;
- it runs in the root (or its re-rooted ``WorkingDirectory``), with systemd's bare environment (``PATH``,
  ``LANG=C.UTF-8``) plus the unit's ``Environment``, stdin from ``/dev/null``, stdout and stderr appended to
  ``<root>/var/log/<unit>.log`` (its journal), in a session and process group of its own.

Other ``runcmd`` commands are not run (the simulator runs no shell commands on the host): they are listed in
``skipped_commands``. ``Restart=`` is honoured after ``RestartSec`` (with systemd's default start limit: 5 starts in
10 s), on a new port. A reboot or reset stops the process and, a boot time after, starts the enabled units again
(``runcmd`` and ``write_files`` run once per instance, as cloud-init's do); ``poweroff``/``shutdown`` and a delete
stop it; when the server is gone its directory is removed.

Stopping is SIGTERM to the process group, then SIGKILL after :data:`STOP_GRACE_SECONDS`. At ``POST /_sim/reset``
every process is stopped and every server directory removed; at the simulator's lifespan shutdown the state dir
too. Should the simulator die without a shutdown (SIGKILL), on Linux each agent gets SIGKILL from the kernel
(``PR_SET_PDEATHSIG``, set by a tiny launcher that then ``exec``s the service, so the pid is the service's); the
signal follows the thread that started the agent, the event loop's. The state dir (``$TMPDIR/smoke-sim-*``) is left
behind in that case. Elsewhere than Linux there is no such guard. An ``atexit`` hook kills what is left when the
interpreter exits without a lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from smoke.serving import free_port
from smoke.simulators.agent.cloud_init import (
    CloudConfigError,
    WriteFile,
    parse_cloud_config,
    systemctl_starts,
)
from smoke.simulators.agent.systemd import ServiceUnit, UnitError, parse_service_unit
from smoke.simulators.hetzner.servers import Server

__all__ = ("AGENT_HOST", "STOP_GRACE_SECONDS", "ProcessAgents")

AGENT_HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 2.0
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_SECONDS = 10.0
UNIT_DIRECTORIES = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
SERVICE_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

_PYTHON = re.compile(r"^python3(\.\d+)?$")
_PR_SET_PDEATHSIG = 1
_LAUNCHER = (
    "import ctypes, os, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, {int(signal.SIGKILL)})\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(70)\n"  # the simulator died before the guard was set
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(eq=False)
class Machine:
    """One server as the process agents see it: its disk, what its first boot did, its service's process."""

    server_id: int
    root: Path
    up: bool = False
    first_boot_done: bool = False
    files: list[dict[str, object]] = field(default_factory=list)
    skipped_commands: list[list[str]] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    service: str | None = None
    unit: ServiceUnit | None = None
    ignored_units: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None
    command: list[str] | None = None
    problem: str | None = None
    exit_code: int | None = None
    restart_at: float | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def log(self) -> Path | None:
        return None if self.service is None else self.root / "var" / "log" / f"{self.service}.log"

    @property
    def state(self) -> str:
        if self.process is not None:
            return "running"
        if not self.up:
            return "stopped"
        if self.problem is not None:
            return "failed"
        if self.exit_code is not None:
            return "exited"
        return "no_service"

    def unreachable_reason(self) -> str:
        """Why nothing answers on this server's agent port, in one line."""
        if self.problem is not None:
            return f"the agent is not running: {self.problem}"
        if self.exit_code is not None:
            restart = " (restarting)" if self.restart_at is not None else ""
            exited = f"{self.service} exited with code {self.exit_code}{restart}"
            return f"the agent is not running: {exited}; see {self.log}"
        if self.service is None:
            return "nothing listens on the agent port: the server's user data starts no service"
        return "the agent is not running"


class ProcessAgents:
    """The machines of one simulator. Every method is called on the event loop's thread."""

    def __init__(self) -> None:
        self._state_dir: Path | None = None
        self._machines: dict[int, Machine] = {}
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._reapers: set[asyncio.Task[None]] = set()
        self._guarded = False

    # --- what the API and the control routes read --------------------------------------------------------------

    def describe(self, server_id: int) -> dict[str, object]:
        """The server's agent, as ``GET /_sim/state`` lists it.

        ``state``: ``waiting`` (not booted yet: only ``mode``, ``pid``, ``root``, ``port`` and ``state``),
        ``running`` (``pid`` is alive; it may still be starting to listen on ``port``), ``stopped`` (the server is
        off, rebooting or being deleted), ``exited`` (the process ended on its own: ``exit_code``, negative for a
        signal), ``failed`` (``problem`` says why nothing was started) or ``no_service`` (the user data starts
        none). ``command`` is the argument list as run; ``files`` are the written files (``path`` as the user data
        names it, ``size``, ``permissions``, ``sha256``); ``log`` is the service's stdout and stderr.
        """
        machine = self._machines.get(server_id)
        if machine is None:
            return {"mode": "process", "pid": None, "root": None, "port": None, "state": "waiting"}
        return {
            "mode": "process",
            "pid": None if machine.process is None else machine.process.pid,
            "root": str(machine.root),
            "port": machine.port,
            "state": machine.state,
            "service": machine.service,
            "command": machine.command,
            "exit_code": machine.exit_code,
            "problem": machine.problem,
            "log": None if machine.log is None else str(machine.log),
            "files": machine.files,
            "skipped_commands": machine.skipped_commands,
            "ignored_units": machine.ignored_units,
        }

    def address(self, server_id: int) -> tuple[int | None, str]:
        """The loopback port of the server's running agent, or None and why nothing answers there."""
        machine = self._machines.get(server_id)
        if machine is None:
            return None, "the agent is not up yet"
        if machine.process is not None and machine.port is not None:
            return machine.port, ""
        return None, machine.unreachable_reason()

    # --- keeping the processes in line with the servers --------------------------------------------------------

    def reconcile(self, servers: Iterable[Server], now: float) -> None:
        """Boot the servers whose agent should be up, stop those whose should not, forget the deleted ones."""
        live = {server.id: server for server in servers}
        for server_id, known in list(self._machines.items()):
            server = live.get(server_id)
            if server is None:
                self._halt(known)
                del self._machines[server_id]
                shutil.rmtree(known.root, ignore_errors=True)
            elif not server.agent_is_up(now):
                self._halt(known)
        for server in live.values():
            if not server.agent_is_up(now):
                continue
            if (machine := self._machines.get(server.id)) is None:
                machine = self._machines[server.id] = Machine(server.id, self._servers_dir() / str(server.id))
            if machine.up:
                self._supervise(machine)
            else:
                self._boot(machine, server.user_data)

    async def stop_all(self) -> None:
        """Stop every process, forget every machine, remove their directories (``POST /_sim/reset``)."""
        for machine in self._machines.values():
            self._halt(machine)
        self._machines.clear()
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir / "servers", ignore_errors=True)
        while self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)

    async def aclose(self) -> None:
        """:meth:`stop_all`, then remove the state dir (lifespan shutdown)."""
        await self.stop_all()
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
        if self._guarded:
            atexit.unregister(self._kill_everything)
            self._guarded = False

    # --- booting -----------------------------------------------------------------------------------------------

    def _servers_dir(self) -> Path:
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="smoke-sim-"))
        if not self._guarded:
            atexit.register(self._kill_everything)
            self._guarded = True
        return self._state_dir / "servers"

    def _boot(self, machine: Machine, user_data: str | None) -> None:
        machine.up = True
        machine.root.mkdir(parents=True, exist_ok=True)
        if machine.first_boot_done:
            units = list(machine.enabled)
            if units:  # a new boot: systemd has forgotten the last one's failures
                machine.problem, machine.exit_code, machine.starts = None, None, []
        else:
            machine.first_boot_done = True
            units = self._first_boot(machine, user_data)
        if not units:
            return
        machine.service, machine.ignored_units = units[0], units[1:]
        try:
            machine.unit = _read_unit(machine.root, units[0])
        except UnitError as error:
            machine.problem = f"{units[0]}: {error}"
            return
        self._start(machine)

    def _first_boot(self, machine: Machine, user_data: str | None) -> list[str]:
        """Write the files, read ``runcmd``; return the units started now, in order."""
        try:
            config = parse_cloud_config(user_data)
        except CloudConfigError as error:
            machine.problem = str(error)
            return []
        if config is None:
            return []
        for item in config.files_in_order():
            try:
                machine.files.append(_write(machine.root, item))
            except OSError as error:
                machine.problem = f"write_files: {item.path}: {error.strerror or error}"
                break  # cloud-init's write_files module stops at the first file it cannot write
        started: list[str] = []
        for command in config.runcmd:
            request = systemctl_starts(command)
            if request is None:
                if list(command[-1:]) != ["daemon-reload"]:
                    machine.skipped_commands.append(list(command))
                continue
            for unit in request.units:
                if request.enable and unit not in machine.enabled:
                    machine.enabled.append(unit)
                if request.now and unit not in started:
                    started.append(unit)
        return started

    def _start(self, machine: Machine) -> None:
        assert machine.unit is not None
        assert machine.service is not None
        port = free_port(AGENT_HOST)
        try:
            command = _command(machine.root, machine.unit, port)
        except UnitError as error:
            machine.problem = f"{machine.service}: {error}"
            return
        log = machine.log
        assert log is not None
        log.parent.mkdir(parents=True, exist_ok=True)
        cwd = machine.root
        if machine.unit.working_directory is not None:
            cwd = Path(_rerooted(machine.root, machine.unit.working_directory) or machine.root)
        try:
            with log.open("ab") as output:
                process = subprocess.Popen(  # noqa: S603  (the unit's own command, its paths re-rooted)
                    _launched(command),
                    cwd=cwd,
                    env={**SERVICE_ENVIRONMENT, **machine.unit.environment},
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            machine.problem = f"{machine.service}: cannot start {command[0]}: {error.strerror or error}"
            return
        self._processes.add(process)
        machine.process, machine.port, machine.command = process, port, command
        machine.exit_code, machine.restart_at = None, None
        machine.starts = [*machine.starts[-(START_LIMIT_BURST - 1) :], time.monotonic()]

    def _supervise(self, machine: Machine) -> None:
        """Notice a service that ended on its own; restart it as its ``Restart=`` says."""
        if machine.process is not None and (returncode := _ended(machine.process)) is not None:
            self._processes.discard(machine.process)
            machine.process, machine.port, machine.exit_code = None, None, returncode
            assert machine.unit is not None
            if machine.unit.restarts_after(returncode):
                if _start_limit_hit(machine.starts):
                    machine.problem = f"{machine.service}: start request repeated too quickly (start limit hit)"
                else:
                    machine.restart_at = time.monotonic() + machine.unit.restart_seconds
        if machine.restart_at is not None and time.monotonic() >= machine.restart_at and machine.problem is None:
            self._start(machine)

    # --- stopping ----------------------------------------------------------------------------------------------

    def _halt(self, machine: Machine) -> None:
        """The server went down: its process is stopped, its files stay."""
        machine.up, machine.restart_at = False, None
        if machine.process is not None:
            self._stop(machine.process)
        machine.process, machine.port = None, None

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        if _ended(process) is not None:
            self._processes.discard(process)
            return
        _signal_group(process, signal.SIGTERM)
        reaper = asyncio.get_running_loop().create_task(self._reap(process))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        killed = False
        try:
            while _ended(process) is None:
                if not killed and time.monotonic() >= deadline:
                    _signal_group(process, signal.SIGKILL)
                    killed = True
                await asyncio.sleep(0.02)
        finally:
            self._processes.discard(process)

    def _kill_everything(self) -> None:
        """At interpreter exit without a lifespan shutdown: SIGKILL every process, remove the state dir."""
        for process in list(self._processes):
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        self._processes.clear()
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)


def _write(root: Path, item: WriteFile) -> dict[str, object]:
    target = root / item.path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("ab" if item.append else "wb") as output:
        output.write(item.content)
    target.chmod(item.permissions)
    return {
        "path": item.path,
        "size": len(item.content),
        "permissions": f"{item.permissions:04o}",
        "sha256": hashlib.sha256(item.content).hexdigest(),
    }


def _read_unit(root: Path, name: str) -> ServiceUnit:
    for directory in UNIT_DIRECTORIES:
        path = root / directory.lstrip("/") / name
        if path.is_file():
            return parse_service_unit(path.read_text(encoding="utf-8", errors="replace"))
    raise UnitError(f"Unit file {name} does not exist.")


def _rerooted(root: Path, path: str) -> str | None:
    """``path`` under ``root`` when it is absolute and exists there, else None."""
    if not path.startswith("/"):
        return None
    candidate = root / os.path.normpath(path).lstrip("/")
    return str(candidate) if candidate.exists() else None


def _command(root: Path, unit: ServiceUnit, port: int) -> list[str]:
    """The unit's ``ExecStart`` as this machine runs it (see the module's docstring)."""
    program, *arguments = unit.exec_start
    executable = _rerooted(root, program)
    if executable is None and _PYTHON.match(os.path.basename(program)):
        executable = sys.executable
    if executable is None:
        raise UnitError(f"ExecStart runs {program}: neither python3 nor a file the user data wrote")
    words = [_rerooted_word(root, word) for word in arguments]
    return [executable, *_on_loopback(words, port)]


def _rerooted_word(root: Path, word: str) -> str:
    if word.startswith("-") and "=" in word:
        option, _, value = word.partition("=")
        rerooted = _rerooted(root, value)
        return word if rerooted is None else f"{option}={rerooted}"
    return _rerooted(root, word) or word


def _on_loopback(words: list[str], port: int) -> list[str]:
    """``words`` with ``--port`` set to ``port`` and ``--host`` to the loopback address."""
    words = list(words)
    port_at = _option_at(words, "--port")
    if port_at is None:
        raise UnitError("ExecStart has no --port: the simulator cannot give the service a port of its own")
    _set_option(words, port_at, "--port", str(port))
    host_at = _option_at(words, "--host")
    if host_at is None:
        words[port_at:port_at] = ["--host", AGENT_HOST]
    else:
        _set_option(words, host_at, "--host", AGENT_HOST)
    return words


def _option_at(words: list[str], option: str) -> int | None:
    for index, word in enumerate(words):
        if (word == option and index + 1 < len(words)) or word.startswith(f"{option}="):
            return index
    return None


def _set_option(words: list[str], index: int, option: str, value: str) -> None:
    if words[index] == option:
        words[index + 1] = value
    else:
        words[index] = f"{option}={value}"


def _launched(command: list[str]) -> list[str]:
    """On Linux, ``command`` behind the launcher that makes the kernel SIGKILL it should the simulator die."""
    if sys.platform != "linux":
        return command
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *command]


def _start_limit_hit(starts: list[float]) -> bool:
    recent = [moment for moment in starts if moment > time.monotonic() - START_LIMIT_INTERVAL_SECONDS]
    return len(recent) >= START_LIMIT_BURST


def _ended(process: subprocess.Popen[bytes]) -> int | None:
    """The exit code of ``process`` once it has ended (<0: killed by that signal), else None.

    Where ``waitid`` can look without reaping, whatever is left in the process's group is killed first, while the
    unreaped main process still holds the group's ID (so the signal cannot reach a group that reused it).
    """
    if process.returncode is not None or not hasattr(os, "waitid"):
        return process.poll()
    try:
        exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return process.poll()
    if exited is None or exited.si_pid == 0:
        return None
    _signal_group(process, signal.SIGKILL)
    return process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
