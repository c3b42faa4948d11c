"""cloud-init's own schema for cloud-config, taken from its Debian package without installing anything.

``apt-get download cloud-init`` fetches the package into a scratch directory, ``dpkg-deb -x`` unpacks it there, and
``schema-cloud-config-v1.json`` (the schema ``cloud-init schema --config-file`` validates against) is kept in
``~/.cache/smoke/cloud-init/`` (``$XDG_CACHE_HOME`` if set), so later runs need no network. CI runs this file as a
script ahead of the tests (see ``.ci/run``); the tests call :func:`cached_schema` and skip with its reason when
the schema cannot be had.

Why the schema file and not the ``cloud-init schema`` command of the unpacked tree: the command imports most of
cloud-init (its CLI loads the distro and network modules), which needs configobj, jinja2, jsonpatch and jsonschema
on whichever Python runs the tests, and cloud-init's code is written for the Python of its distribution. The schema
needs only ``jsonschema``, and it is the very document the command checks against.

Standard library only, so that ``python3 tests/agent/cloud_init_schema.py`` works before any environment exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "cloud-init"
SCHEMA_NAME = "schema-cloud-config-v1.json"
COMMAND_TIMEOUT_SECONDS = 300


class SchemaUnavailable(Exception):
    """The schema could not be had; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smoke" / "cloud-init"


def cached_schema() -> Path:
    """The path of cloud-init's cloud-config schema, fetched once into :func:`cache_dir`.

    Raises:
        SchemaUnavailable: no apt-get or dpkg-deb here, or the package could not be downloaded or read.
    """
    target = cache_dir() / SCHEMA_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smoke-cloud-init-") as scratch:
        schema = _unpacked_schema(Path(scratch))
        staged = target.with_name(f".{SCHEMA_NAME}.{os.getpid()}")
        shutil.copyfile(schema, staged)
        staged.replace(target)  # atomic: a parallel run sees the whole file or none
    return target


def _unpacked_schema(scratch: Path) -> Path:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SchemaUnavailable(f"{tool} is not on this machine (the schema comes from a Debian package)")
    download = ["apt-get", "download", PACKAGE]
    result = _run(download, scratch)
    if result.returncode != 0 and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"], scratch)  # a fresh machine may have no package lists yet
        result = _run(download, scratch)
    packages = sorted(scratch.glob(f"{PACKAGE}_*.deb"))
    if result.returncode != 0 or not packages:
        raise SchemaUnavailable(f"apt-get download {PACKAGE} failed: {_last_line(result.stderr)}")
    package = packages[0]
    if (result := _run(["dpkg-deb", "-x", str(package), "tree"], scratch)).returncode != 0:
        raise SchemaUnavailable(f"dpkg-deb -x {package.name} failed: {_last_line(result.stderr)}")
    found = sorted((scratch / "tree").rglob(f"cloudinit/config/schemas/{SCHEMA_NAME}"))
    if not found:
        raise SchemaUnavailable(f"{package.name} holds no {SCHEMA_NAME}")
    return found[0]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SchemaUnavailable(f"{' '.join(command)} took over {COMMAND_TIMEOUT_SECONDS} s") from None


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("W:")]
    return lines[-1] if lines else "no message"


if __name__ == "__main__":
    try:
        print(f"cloud-init schema: {cached_schema()}")
    except SchemaUnavailable as reason:
        print(f"cloud-init schema unavailable: {reason}", file=sys.stderr)
        sys.exit(1)
