"""The hostile-input sweep (docs/api.md): every string, path and query slot of every endpoint, times hostile values.

A case is one request: a valid request of one operation with one slot (a body field, a path parameter, a query
parameter) replaced by one hostile value, or with its whole body replaced by a hostile body. Every answer must be one
the served OpenAPI document lists for the operation, in the error shapes of docs/api.md, and never a 5xx. A value
holding a character the database cannot store (U+0000, a lone surrogate) must be a 422 at its own slot, or at
``["body"]`` (``json_invalid``) where JSON itself cannot carry it.

The same table runs on the public fakes (tests/unit/api) and on PostgreSQL behind a real server
(tests/integration): the fakes store a NUL that PostgreSQL refuses.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

__all__ = ("OPERATIONS", "Case", "Operation", "Sweep", "cases_of")

Where = Literal["body", "path", "query"]

HOSTILE_TEXT: Mapping[str, str] = {
    "U+0000": "\x00",
    "U+0000 inside": "key\x00key",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "a\udfffb",
    "U+0085 NEL": "key\u0085",
    "U+00A0 NBSP": "\u00a0key\u00a0",
    "LF CR": "key\n\rkey",
    "CR LF and a header": "key\r\nX-Injected: 1",
    "tab": "a\tb",
    "ANSI escape": "\x1b[31mred\x1b[0m",
    "DEL": "\x7f",
    "U+009B C1 CSI": "\x9b",
    "U+2028 line separator": "a\u2028b",
    "U+202E right-to-left override": "\u202eab",
    "U+FEFF BOM": "\ufeffkey",
    "U+FFFF noncharacter": "\uffff",
    "U+FFFD replacement": "\ufffd",
    "private use": "\ue000",
    "U+10FFFF": "\U0010ffff",
    "emoji": "\U0001f525",
    "astral letters": "\U0001d518\U0001d52b\U0001d526",
    "combining accent": "e\u0301",
    "literal %00": "%00",
    "slash": "a/b",
    "dot dot": "..",
    "backslash": "a\\b",
    "quotes": "a'\"b",
    "spaces only": "   ",
    "empty": "",
    "JSON": '{"a": 1}',
    "SQL": "'; DROP TABLE instances; --",
    "10 000 characters": "x" * 10_000,
}
"""Text a client can put in any string slot."""

DATABASE_REFUSES = ("\x00", *(chr(c) for c in range(0xD800, 0xE000)))
"""Characters PostgreSQL cannot store in text: U+0000, and the surrogates (no UTF-8 form)."""

HOSTILE_SEGMENTS: Mapping[str, str] = {
    "%00": "%00",
    "a%00b": "a%00b",
    "%FF (not UTF-8)": "%FF",
    "%C0%80 (overlong NUL)": "%C0%80",
    "%ED%A0%80 (UTF-8 surrogate)": "%ED%A0%80",
    "%E2%80%A8 (U+2028)": "%E2%80%A8",
    "%2F": "%2F",
    "%25": "%25",
    "%2e%2e": "%2e%2e",
    "%zz (no escape)": "%zz",
}
"""Path segments as sent on the wire: percent escapes the server decodes (or cannot)."""

HOSTILE_INTEGER_TEXT: Mapping[str, str] = {
    "empty": "",
    "a word": "abc",
    "a fraction": "1.5",
    "an exponent": "1e3",
    "hex": "0x10",
    "a plus sign": "+1",
    "underscores": "1_0",
    "spaces around": " 1 ",
    "fullwidth digit": "\uff11",
    "Arabic-Indic digit": "\u0661",
    "2**64": str(2**64),
    "1 and 4000 zeros": "1" + "0" * 4000,
    "1 and 5000 zeros (over int's 4300 digits)": "1" + "0" * 5000,
    "U+0000": "\x00",
    "literal %00": "%00",
}
"""Text a client can put in an integer query parameter (limits come from the slot)."""

HOSTILE_NUMBERS: Mapping[str, str] = {
    "-1": "-1",
    "2**31": str(2**31),
    "2**63": str(2**63),
    "2**64": str(2**64),
    "1 and 4000 zeros": "1" + "0" * 4000,
    "1 and 5000 zeros (over int's 4300 digits)": "1" + "0" * 5000,
    "1e999": "1e999",
    "-1e999": "-1e999",
    "NaN": "NaN",
    "1.5": "1.5",
    "1e2": "1e2",
    "-0": "-0",
    "a string": '"1"',
    "true": "true",
    "null": "null",
    "an array": "[1]",
}
"""Raw JSON a client can put in an integer body field."""

HOSTILE_BODIES: Mapping[str, tuple[bytes, int, list[Any] | None, str | None]] = {
    "empty": (b"", 422, ["body"], "missing"),
    "malformed": (b"{not json", 422, ["body"], "json_invalid"),
    "truncated": (b'{"a": "b"', 422, ["body"], "json_invalid"),
    "invalid UTF-8": (b'{"a": "\xff"}', 422, ["body"], "json_invalid"),
    "a UTF-8 encoded surrogate": (b'{"a": "\xed\xa0\x80"}', 422, ["body"], "json_invalid"),
    "a BOM first": (b"\xef\xbb\xbf{}", 422, ["body"], "json_invalid"),
    "1e999": (b'{"a": 1e999}', 422, ["body"], "json_invalid"),
    "NaN": (b'{"a": NaN}', 422, ["body"], "json_invalid"),
    "two documents": (b"{}{}", 422, ["body"], "json_invalid"),
    "nested 60 000 arrays deep": (b"[" * 60_000, 422, ["body"], "json_invalid"),
    "nested 10 000 objects deep": (b'{"a":' * 10_000, 422, ["body"], "json_invalid"),
    "nested 900 arrays deep, closed": (b"[" * 900 + b"]" * 900, 422, ["body"], None),
    "a lone surrogate as a key": (b'{"\\ud800": 1}', 422, ["body"], "json_invalid"),
    "U+0000 as a key": (b'{"\\u0000": 1}', 422, None, None),
    "an empty key": (b'{"": 1}', 422, None, None),
    "an array": (b"[]", 422, ["body"], "type_error"),
    "a string": (b'"x"', 422, ["body"], "type_error"),
    "a number": (b"1", 422, ["body"], "type_error"),
    "null": (b"null", 422, ["body"], "type_error"),
    "over 64 KiB": (b'{"a": "' + b"x" * 65_536 + b'"}', 413, None, None),
}
"""Whole bodies: (bytes, status, loc, type) with ``None`` where any documented value will do."""


@dataclass(frozen=True)
class Slot:
    """One place of an operation where a client puts a value."""

    where: Where
    name: str
    kind: Literal["text", "integer"] = "text"
    min_value: int | None = None
    max_value: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Operation:
    """One operation of the API: a valid request of it, and the slots a client fills."""

    name: str
    method: str
    path: str
    slots: tuple[Slot, ...]
    body: Mapping[str, Any] | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    agent: bool = False
    """Authenticated by the agent token of the running instance, not the ops token."""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


SMOKE = "/internal/v1/smoke"
INSTANCE = Slot("path", "instance_id")
OPERATIONS = (
    Operation(
        "Smoke Provision",
        "POST",
        f"{SMOKE}/provision",
        (
            Slot("body", "idempotency_key", max_length=255),
            Slot("body", "manifest_id", max_length=100),
            Slot("body", "region_id", max_length=80),
            Slot("body", "tier_id", max_length=80),
        ),
        body={"idempotency_key": "sweep", "manifest_id": "agent-default", "region_id": "fsn1", "tier_id": "small"},
    ),
    Operation(
        "Smoke Poll",
        "GET",
        f"{SMOKE}/instances/by-key/{{idempotency_key}}",
        (Slot("path", "idempotency_key", max_length=255),),
    ),
    Operation("Smoke Status", "GET", f"{SMOKE}/instances/{{instance_id}}", (INSTANCE,)),
    Operation("Smoke Delete", "DELETE", f"{SMOKE}/instances/{{instance_id}}", (INSTANCE,)),
    Operation(
        "Smoke Chat",
        "POST",
        f"{SMOKE}/instances/{{instance_id}}/chat",
        (INSTANCE, Slot("body", "message", max_length=4000)),
        body={"message": "hello"},
    ),
    Operation(
        "Smoke Llm Events",
        "GET",
        f"{SMOKE}/instances/{{instance_id}}/llm-events",
        (INSTANCE, Slot("query", "window_seconds", "integer", 1, 86400)),
        query={"window_seconds": "900"},
    ),
    Operation("Smoke Events", "GET", f"{SMOKE}/instances/{{instance_id}}/events", (INSTANCE,)),
    Operation(
        "Smoke Instances",
        "GET",
        f"{SMOKE}/instances",
        (Slot("query", "status"), Slot("query", "limit", "integer", 1, 200), Slot("query", "before")),
        query={"limit": "50"},
    ),
    Operation(
        "Agent Usage Event",
        "POST",
        "/internal/v1/agent/usage-events",
        (
            Slot("body", "request_id", max_length=128),
            Slot("body", "provider", max_length=64),
            Slot("body", "model", max_length=128),
            Slot("body", "input_tokens", "integer", 0, 2**31 - 1),
            Slot("body", "output_tokens", "integer", 0, 2**31 - 1),
        ),
        body={"request_id": "sweep", "provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1},
        agent=True,
    ),
)


@dataclass(frozen=True)
class Case:
    """One request of the sweep, and what its answer must be beyond being documented."""

    operation: Operation
    label: str
    slot: Slot | None
    """None when the whole body is replaced."""
    value: str
    """The decoded text, raw JSON (integer body slots), a wire segment (``raw``) or the body (``slot`` None)."""
    raw: bool = False
    expected: tuple[int, list[Any] | None, str | None] | None = None

    def received(self) -> str:
        """The text the server decodes: percent escapes and UTF-8 in a path or query decode with replacement."""
        if self.slot is None or self.slot.where == "body":
            return self.value
        if self.raw:
            return urllib.parse.unquote(self.value)
        return self.value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")

    def refused_by_the_database(self) -> bool:
        textual = self.slot is not None and (self.slot.kind == "text" or self.slot.where != "body")
        return textual and any(c in self.received() for c in DATABASE_REFUSES)


def cases_of(operation: Operation) -> Iterator[Case]:
    for slot in operation.slots:
        for label, value in _values_of(slot):
            yield Case(operation, f"{slot.where}.{slot.name} {label}", slot, value)
        if slot.where == "path":
            for label, segment in HOSTILE_SEGMENTS.items():
                yield Case(operation, f"path.{slot.name} {label}", slot, segment, raw=True)
    if operation.body is not None:
        for label, (body, status, loc, type_) in HOSTILE_BODIES.items():
            yield Case(operation, f"body {label}", None, body.decode("latin-1"), expected=(status, loc, type_))


def _values_of(slot: Slot) -> Iterator[tuple[str, str]]:
    if slot.kind == "integer":
        assert slot.min_value is not None
        assert slot.max_value is not None
        limits = {
            "min - 1": slot.min_value - 1,
            "min": slot.min_value,
            "max": slot.max_value,
            "max + 1": slot.max_value + 1,
        }
        yield from ((label, str(value)) for label, value in limits.items())
        yield from (HOSTILE_NUMBERS if slot.where == "body" else HOSTILE_INTEGER_TEXT).items()
        return
    yield from HOSTILE_TEXT.items()
    if slot.max_length is not None:
        for letter, name in (("k", "ASCII"), ("\U0001f525", "emoji")):
            yield f"{name} x max", letter * slot.max_length
            yield f"{name} x (max + 1)", letter * (slot.max_length + 1)


class Sweep:
    """Sends the cases of an operation with ``client``; path slots default to ``instance_id``, which is running."""

    def __init__(
        self, client: httpx.AsyncClient, document: Mapping[str, Any], instance_id: uuid.UUID, agent_token: str
    ):
        self.client = client
        self.document = document
        self.instance_id = instance_id
        self.agent_token = agent_token
        self.sent = 0

    async def run(self, operation: Operation) -> list[str]:
        """Send every case of ``operation``; what was wrong with the answers, one line per case."""
        documented = self._documented(operation)
        problems = []
        for number, case in enumerate(cases_of(operation)):
            response = await self._send(case, f"sweep-{number}-{uuid.uuid4().hex[:8]}")
            self.sent += 1
            if problem := _problem(case, response, documented):
                problems.append(f"{operation.name} {case.label!r}: {problem}")
        return problems

    def _documented(self, operation: Operation) -> set[int]:
        template = operation.path
        responses = self.document["paths"][template][operation.method.lower()]["responses"]
        return {int(status) for status in responses}

    async def _send(self, case: Case, unique: str) -> httpx.Response:
        operation = case.operation
        path_values = {"idempotency_key": quote("sweep"), "instance_id": str(self.instance_id)}
        query = dict(operation.query)
        content: bytes | None = None
        if operation.body is not None:
            body = {**operation.body}
            for name in ("idempotency_key", "request_id"):
                if name in body:
                    body[name] = unique  # a key is never sent with two bodies; a report is never a duplicate
            content = _json(body)
        slot = case.slot
        if slot is None:
            content = case.value.encode("latin-1")
        elif slot.where == "path":
            path_values[slot.name] = case.value if case.raw else quote(case.value)
        elif slot.where == "query":
            query[slot.name] = case.value
        elif slot.kind == "integer":
            content = _json(body, raw={slot.name: case.value})
        else:
            content = _json({**body, slot.name: case.value})
        url = operation.path.format(**path_values)
        if query:
            url += "?" + "&".join(f"{name}={quote(value)}" for name, value in query.items())
        headers = {"Content-Type": "application/json"} if content is not None else {}
        if operation.agent:
            headers["Authorization"] = f"Bearer {self.agent_token}"
        return await self.client.request(operation.method, url, content=content, headers=headers)


def quote(text: str) -> str:
    """``text`` as one percent-encoded path segment or query value; dots too, so no client resolves ``..``."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


def _json(body: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> bytes:
    """``body`` as JSON (a lone surrogate as its ``\\uXXXX`` escape), with the ``raw`` fields' JSON as given."""
    placeholders = {name: f"@@raw-{name}@@" for name in raw or {}}
    text = json.dumps({**body, **placeholders})
    for name, value in (raw or {}).items():
        text = text.replace(json.dumps(placeholders[name]), value)
    return text.encode()


def _problem(case: Case, response: httpx.Response, documented: set[int]) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:200]!r}"
    if status not in documented and not _another_path(case, status):
        return f"{status} is not documented for the operation ({sorted(documented)}): {response.text[:200]!r}"
    if status >= 400 and (shape := _shape_problem(response)):
        return shape
    if case.expected is not None:
        return _expectation_problem(case.expected, response)
    if case.refused_by_the_database():
        assert case.slot is not None
        where = ["body"] if case.slot.where == "body" and _has_surrogate(case.value) else None
        return _expectation_problem((422, where or [case.slot.where, case.slot.name], None), response)
    return None


def _another_path(case: Case, status: int) -> bool:
    """A path parameter that is empty or holds a ``/`` makes the request one of another path (or of none): the
    router's 404 or 405."""
    if case.slot is None or case.slot.where != "path" or status not in (404, 405):
        return False
    received = case.received()
    return received == "" or "/" in received


def _has_surrogate(text: str) -> bool:
    return re.search("[\ud800-\udfff]", text) is not None


def _shape_problem(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} is not JSON: {response.text[:200]!r}"
    if response.status_code != 422:
        ok = isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str)
        return None if ok else f"{response.status_code} is not {{'detail': str}}: {body!r:.200}"
    items = body.get("detail") if isinstance(body, dict) and set(body) == {"detail"} else None
    if not isinstance(items, list) or not items:
        return f"422 is not {{'detail': [...]}}: {body!r:.200}"
    for item in items:
        well_formed = (
            isinstance(item, dict)
            and set(item) == {"loc", "msg", "type"}
            and isinstance(item["loc"], list)
            and item["loc"][:1] in (["body"], ["path"], ["query"], ["header"])
            and isinstance(item["msg"], str)
            and isinstance(item["type"], str)
        )
        if not well_formed:
            return f"422 item is not {{'loc': [body|path|query|header, ...], 'msg': str, 'type': str}}: {item!r:.200}"
    return None


def _expectation_problem(expected: tuple[int, list[Any] | None, str | None], response: httpx.Response) -> str | None:
    status, loc, type_ = expected
    if response.status_code != status:
        return f"{response.status_code} instead of {status}: {response.text[:200]!r}"
    if status != 422 or (loc is None and type_ is None):
        return None
    items = response.json()["detail"]
    if any((loc is None or i["loc"] == loc) and (type_ is None or i["type"] == type_) for i in items):
        return None
    return f"422 not at loc {loc} type {type_}: {items!r:.200}"
