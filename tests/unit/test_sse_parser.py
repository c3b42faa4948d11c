"""The incremental SSE parser against the WHATWG rules, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from smoke.sse import SseEvent, SseParser

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
    SseEvent("delta", '{"text": "h\u00e9llo \u4e16\u754c"}', "1"),
    SseEvent("delta", "line one\nline two", "2"),
    SseEvent("message", "", "2"),
    SseEvent("message", "no space", None),
    SseEvent("done", '{"usage": {}}', "4"),
]


def parse(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_the_whole_stream_at_once() -> None:
    assert parse([CORPUS.encode()]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    data = CORPUS.encode()

    assert parse([data[i : i + size] for i in range(0, len(data), size)]) == EXPECTED


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    assert parse([b"data: a\r", b"\n\r", b"\n"]) == [SseEvent("message", "a", None)]


def test_an_over_long_line_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse([b"data: " + b"x" * (1 << 21)])
