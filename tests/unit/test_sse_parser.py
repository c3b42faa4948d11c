"""The incremental SSE parser against the WHATWG rules, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from smoke.adapters.sse import SseParser
from smoke.domain.models import ChatEvent

CORPUS = (
    '\ufeffevent: delta\r\nid: 1\r\ndata: {"text": "h\u00e9llo \u4e16\u754c"}\r\n\r\n'
    ": keep-alive\n\n"
    "event: delta\rid: 2\rdata: line one\rdata: line two\r\r"
    "data\n\n"
    "id: 3\n\n"
    "data:no space\nid\n\n"
    'event: done\nid: 4\ndata: {"usage": {}}\n\n'
    "event: delta\ndata: cut by the end of the stream"
)
EXPECTED = [
    ChatEvent("delta", '{"text": "h\u00e9llo \u4e16\u754c"}', "1"),
    ChatEvent("delta", "line one\nline two", "2"),
    ChatEvent("message", "", "2"),
    ChatEvent("message", "no space", None),
    ChatEvent("done", '{"usage": {}}', "4"),
]


def parse(chunks: list[bytes]) -> list[ChatEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_the_whole_stream_at_once() -> None:
    assert parse([CORPUS.encode()]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    data = CORPUS.encode()

    assert parse([data[i : i + size] for i in range(0, len(data), size)]) == EXPECTED


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    assert parse([b"data: a\r", b"\n\r", b"\n"]) == [ChatEvent("message", "a", None)]


def test_an_over_long_line_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse([b"data: " + b"x" * (1 << 21)])
