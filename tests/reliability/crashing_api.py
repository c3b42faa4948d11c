"""``python -m tests.reliability.crashing_api PORT``: the API, configured by the environment, that SIGKILLs itself
right after a provision request is committed and before its job is queued (test-plan row 4)."""

from __future__ import annotations

import asyncio
import sys

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.serving import serve_asgi
from smoke.settings import Settings
from tests.reliability.faults import CrashOnEnqueue


async def main(port: int) -> None:
    settings = Settings.from_env(dotenv=None)
    async with serve_asgi(create_app(make_container(settings, CrashOnEnqueue())), port=port):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
