"""The smoke API as a module-level ASGI app, for ``uvicorn``/``granian`` command lines.

Built exactly as ``smoke serve`` builds it (``create_app(make_container(settings))``), from the environment only
(``DATABASE_URL``, ``OPS_BEARER_TOKEN``, ``AGENT_TOKEN_SECRET``, ...). ``smoke serve`` itself runs uvicorn inside
``asyncio.run`` (``smoke.serving.serve_asgi``); this module lets the benchmarks serve the same app on other servers.
"""

from __future__ import annotations

from smoke.api import create_app
from smoke.bootstrap import make_container
from smoke.observability import configure_logging
from smoke.settings import Settings

settings = Settings.from_env(dotenv=None)
settings.require("DATABASE_URL", "OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET")
_secrets = (settings.ops_bearer_token, settings.hetzner_api_token, settings.agent_token_secret)
configure_logging(settings.log_level, settings.log_format, secrets=[s for s in _secrets if s])  # as the CLI does

app = create_app(make_container(settings))
