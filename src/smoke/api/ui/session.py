"""The dashboard's session cookie: proof that its holder typed the ops token once, without the token in it.

Its value is ``<expiry>.<HMAC-SHA256 of the expiry under the ops token>``. It reveals nothing of the token, every API
process checks it without shared state or a key of its own, and changing ``OPS_BEARER_TOKEN`` ends every session.
It opens the dashboard only: the API still wants the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from litestar.datastructures import Cookie

__all__ = ("COOKIE_NAME", "LIFETIME_SECONDS", "is_valid", "session_cookie", "signed_out_cookie")

COOKIE_NAME: Final = "smoke_ui_session"
LIFETIME_SECONDS: Final = 30 * 24 * 3600
_PATH: Final = "/ui"
_PURPOSE: Final = b"smoke dashboard session\x00"
_EXPIRY: Final = re.compile(r"[0-9]{1,12}")


def session_cookie(ops_token: bytes, now: float, *, secure: bool) -> Cookie:
    """A new session of ``LIFETIME_SECONDS``; ``secure`` when the request came over https."""
    expiry = str(int(now) + LIFETIME_SECONDS)
    return _cookie(f"{expiry}.{_signature(ops_token, expiry)}", LIFETIME_SECONDS, secure=secure)


def signed_out_cookie(*, secure: bool) -> Cookie:
    return _cookie("", 0, secure=secure)


def is_valid(value: str | None, ops_token: bytes, now: float) -> bool:
    """Whether ``value`` is a session this token signed that has not expired."""
    expiry, _, signature = (value or "").partition(".")
    if _EXPIRY.fullmatch(expiry) is None or int(expiry) <= now:
        return False
    return hmac.compare_digest(signature.encode(), _signature(ops_token, expiry).encode())


def _signature(ops_token: bytes, expiry: str) -> str:
    digest = hmac.digest(ops_token, _PURPOSE + expiry.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _cookie(value: str, max_age: int, *, secure: bool) -> Cookie:
    return Cookie(
        key=COOKIE_NAME, value=value, max_age=max_age, path=_PATH, httponly=True, samesite="strict", secure=secure
    )
