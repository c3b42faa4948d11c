"""The in-process example of docs/architecture.md runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "architecture.md"


@pytest.mark.slow
def test_the_fakes_example_in_the_architecture_doc_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", ARCHITECTURE.read_text(), flags=re.DOTALL)
    example = next(block for block in blocks if "FakeAdaptersProvider" in block)

    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
