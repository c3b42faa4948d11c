"""Typed helpers at the edges of libraries whose annotations the tests cannot take as they stand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import httpx
from litestar import Litestar

T = TypeVar("T")


def present(value: T | None) -> T:
    """``value``, which must be there: for a field that a library types as optional but the test knows is sent.

    The official ``hcloud`` client types nearly every field of every resource as ``X | None``, whatever the API
    guarantees; this states, where a test reads one, that the simulator must have sent it.
    """
    assert value is not None
    return value


def asgi_transport(app: Litestar) -> httpx.ASGITransport:
    """httpx's in-process transport to ``app``.

    httpx types an ASGI app as taking plain mappings and Litestar's ``__call__`` takes its own TypedDicts, which
    mypy cannot match (a callable's parameters are contravariant): the cast is the one place that says they fit.
    """
    return httpx.ASGITransport(app=cast("Callable[..., Awaitable[None]]", app))
