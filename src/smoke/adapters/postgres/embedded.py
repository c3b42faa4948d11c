"""Embedded PostgreSQL (pgserver) for ``smoke up`` on a machine with no database server."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ("EmbeddedPostgres",)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``; ``url`` reaches database ``smoke`` over a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        """Start (or attach to) the server, create database ``smoke`` if needed, return its URL. Blocking."""
        # pgserver warns when XDG_RUNTIME_DIR is unset (it then uses the temp dir, which is fine).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import pgserver
            except ImportError as error:
                raise RuntimeError(
                    "embedded PostgreSQL needs pgserver (Python 3.11 or 3.12); set DATABASE_URL"
                ) from error
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self._data_dir.resolve(), cleanup_mode="stop")  # type: ignore[attr-defined]
        exists = self._server.psql("SELECT 1 FROM pg_database WHERE datname = 'smoke';")
        if "(1 row)" not in exists:
            self._server.psql("CREATE DATABASE smoke;")
        self.url = str(self._server.get_uri("smoke"))
        return self.url

    def stop(self) -> None:
        """Stop the server unless another process still uses it. Blocking."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
