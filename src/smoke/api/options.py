"""``OPTIONS`` on any route answers ``Allow`` with every method of its path.

Litestar 2 (litestar-org/litestar#4169, fixed in 3.0 only) builds the ``OPTIONS`` handler of a path when the path's
first handler is registered and keeps it when more handlers join the path: ``OPTIONS`` on a path served by a GET and
a DELETE handler answers ``Allow: DELETE, OPTIONS``. The route itself knows all of its methods; this layer puts them
in the ``Allow`` header of Litestar's own ``OPTIONS`` answer, and changes nothing else (status 204, guards, 404s).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute

__all__ = ("EveryMethodAllowed",)


class EveryMethodAllowed:
    """An ASGI layer around ``app``'s handler that corrects the ``Allow`` header of ``OPTIONS`` answers."""

    def __init__(self, handler: Any, app: Litestar) -> None:
        self.handler = handler
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.handler(scope, receive, send)
            return

        async def send_every_method(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if any(name.lower() == b"allow" for name, _ in headers) and (methods := self._methods(scope)):
                    kept = [(name, value) for name, value in headers if name.lower() != b"allow"]
                    message["headers"] = [*kept, (b"allow", ", ".join(sorted(methods)).encode())]
            await send(message)

        await self.handler(scope, receive, send_every_method)

    def _methods(self, scope: dict[str, Any]) -> set[str]:
        """The methods of the route the router matched (its ``path_template``), looked up in the app's routes."""
        template = scope.get("path_template")
        for route in self.app.routes:
            if isinstance(route, HTTPRoute) and route.path_format == template:
                return set(route.methods)
        return set()
