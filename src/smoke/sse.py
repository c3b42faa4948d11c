"""An incremental Server-Sent Events parser (WHATWG HTML §9.2) for bytes arriving in arbitrary chunks.

Neutral ground: the agent adapter (server side) and ``smoke.client`` (client side) both read streams with it, so it
imports nothing of smoke and yields its own ``SseEvent``, which each side maps to its own types.

Handles CRLF, LF and CR line ends (a CRLF split across chunks is one line end), UTF-8 sequences split across chunks,
one leading BOM, comments, fields without a colon, multi-line data, and events cut by the end of the stream
(discarded, as the spec says).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ("SseEvent", "SseParser")

_LINE_END = re.compile("\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event, as the stream sent it.

    Attributes:
        event: its name; ``message`` when the stream named none.
        data: its ``data`` lines, joined by line feeds.
        id: the last event id seen: None until an ``id`` field set one, or after a bare ``id`` reset it.
    """

    event: str
    data: str
    id: str | None = None


class SseParser:
    """Feed it the stream's bytes as they come; it yields each event once its blank line has arrived."""

    def __init__(self, max_line: int = 1 << 20) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._started = False
        self._max_line = max_line
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """The events completed by ``chunk``, in order.

        The chunk's complete lines are split off in one pass (``_LINE_END``), so that a chunk holding many events
        costs what its lines cost, however large it is; only its unfinished last line is kept for the next chunk.
        """
        text = self._decoder.decode(chunk)
        if not text:
            return
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._pending_cr = text.endswith("\r")
        lines = _LINE_END.split(self._buffer + text if self._buffer else text)
        self._buffer = lines.pop()
        if len(self._buffer) > self._max_line:
            raise ValueError("SSE line too long")
        for line in lines:
            if (event := self._line(line)) is not None:
                yield event

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        if self._id is not None:
            self._last_id = self._id or None
            self._id = None
        if not self._data:
            self._event = ""
            return None
        event = SseEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._event, self._data = "", []
        return event
