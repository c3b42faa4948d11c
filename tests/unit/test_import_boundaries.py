"""The domain and the public fakes load without any framework or driver: other apps' unit tests stay fast."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("litestar", "sqlalchemy", "advanced_alchemy", "saq", "httpx", "dishka", "asyncpg", "msgspec")


def test_importing_the_domain_and_the_fakes_loads_no_framework_or_driver() -> None:
    probe = (
        "import sys, smoke.domain, smoke.domain.services, smoke.domain.ports, smoke.testing; "
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )

    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()

    assert loaded == ""
