"""Handlers get their services from the container's APP scope: no request opens a dishka scope of its own.

Every service is APP-scoped and stateless (``smoke.bootstrap.ServiceProvider``), so a request has nothing to put
in a scope of its own. dishka's Litestar integration (``setup_dishka``) would still open a REQUEST scope around
every request, Smoke Status and Smoke Poll included; here ``inject`` reads the app's container instead
(``app.state.dishka_container``, set by ``use_container``), the same container ``create_app`` closes at shutdown.
The handlers keep declaring what they need as ``FromDishka[...]``: the container stays the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import Parameter, signature
from typing import Any, ParamSpec, TypeVar

from dishka import AsyncContainer, FromDishka
from dishka.integrations.base import wrap_injection
from litestar import Litestar, Request

__all__ = ("FromDishka", "container_of", "inject", "use_container")

P = ParamSpec("P")
T = TypeVar("T")

_REQUEST = Parameter("request", Parameter.KEYWORD_ONLY, annotation=Request)


def use_container(app: Litestar, container: AsyncContainer) -> None:
    """Make ``container`` (APP scope) the one that ``inject`` and the guards resolve services from."""
    app.state.dishka_container = container


def container_of(app: Litestar) -> AsyncContainer:
    container: AsyncContainer = app.state.dishka_container
    return container


def _container(_: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncContainer:
    return container_of(kwargs["request"].app)


def inject(func: Callable[P, T]) -> Callable[P, T]:
    """Resolve the handler's ``FromDishka[...]`` parameters from the app's container (APP scope, cached there).

    Like dishka's own ``inject``, it takes Litestar's ``request`` (adding a hidden parameter when the handler has
    none) and removes the injected parameters from the signature, so they are no part of the OpenAPI document.
    """
    takes_request = "request" in signature(func).parameters
    return wrap_injection(
        func=func,
        is_async=True,
        additional_params=[] if takes_request else [_REQUEST],
        container_getter=_container,
    )
