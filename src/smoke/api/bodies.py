"""Request bodies: a body that is not decodable JSON, for whatever reason, is one documented 422."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

__all__ = ("JsonRequest", "UndecodableBody")

_UNKNOWN_PLACE = " - at `$[...]`"
"""What the decoder appends when it cannot say where in the document the problem is."""


class UndecodableBody(Exception):
    """The body is not JSON the decoder can read; the message says why, for the 422 ``json_invalid``."""


class JsonRequest(Request[Any, Any, Any]):
    """A request whose JSON body either decodes or raises ``UndecodableBody``.

    Litestar answers a malformed body with a 400 and lets the decoder's ``RecursionError`` (nesting deeper than it
    allows) through as a 500; both are the client's input, so both are ``UndecodableBody`` here.
    """

    async def json(self) -> Any:
        try:
            return await super().json()
        except SerializationException as error:
            raise UndecodableBody(_reason(str(error))) from None
        except RecursionError:
            raise UndecodableBody("nested deeper than the decoder allows") from None


def _reason(decoder_message: str) -> str:
    reason = decoder_message.removeprefix("JSON is malformed: ").removesuffix(_UNKNOWN_PLACE)
    return reason[:1].lower() + reason[1:]
