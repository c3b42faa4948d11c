"""The client side loads no server code: a leak planted in a scratch copy of the package breaks its contract.

Three kinds, each caught: a direct import of an adapter, a framework, and an indirect one through a module the
client may use (the neutral SSE parser).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CONTRACT = "The client and the check are client side: CI loads no server code, not even indirectly"


def lint_imports_with(tmp_path: Path, module: str, leak: str) -> str:
    """The output of ``lint-imports`` on a copy of the project whose ``module`` also runs ``leak``."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests").mkdir()
    for name in ("__init__.py", "import_contracts.py"):
        shutil.copy(ROOT / "tests" / name, tmp_path / "tests" / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "src" / module
    planted.write_text(
        planted.read_text().replace(
            "from __future__ import annotations\n", f"from __future__ import annotations\n\n{leak}\n", 1
        )
    )
    environment = os.environ | {"PYTHONPATH": f"{tmp_path / 'src'}{os.pathsep}{tmp_path}"}
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    return " ".join((result.stdout + result.stderr).split())  # one line: the report wraps long contract names


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "leak"),
    [
        ("smoke/client.py", "import smoke.adapters.agent"),
        ("smoke/check/console.py", "import litestar"),
        ("smoke/sse.py", "import smoke.domain.services"),
    ],
)
def test_a_planted_leak_breaks_the_client_side_contract(tmp_path: Path, module: str, leak: str) -> None:
    report = lint_imports_with(tmp_path, module, leak)

    assert f"{CONTRACT} BROKEN" in report


@pytest.mark.slow
def test_the_copy_with_a_harmless_import_keeps_it(tmp_path: Path) -> None:
    report = lint_imports_with(tmp_path, "smoke/client.py", "import json")

    assert f"{CONTRACT} KEPT" in report
