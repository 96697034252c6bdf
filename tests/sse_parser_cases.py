"""Cases for the demo page's server-sent events parser (service/http/static/sse.js), run by node
(tests/service/http/test_demo_sse_parser.py) and in the browser (tests/browser/test_demo_page.py).

Each case: text chunks as fetch() may hand them over, and the events [event, id, data] the parser must emit.
"""

from __future__ import annotations

from typing import Any

EXIT = '{"exit":0,"label":"cat","final":false}'
FINAL = '{"exit":4,"label":"cat","final":true}'
STREAM = f"event: exit\nid: 0\ndata: {EXIT}\n\nevent: final\nid: 4\ndata: {FINAL}\n\n"
STREAM_EVENTS = [["exit", "0", EXIT], ["final", "4", FINAL]]


def case(name: str, chunks: list[str], events: list[list[str]]) -> dict[str, Any]:
    return {"name": name, "chunks": chunks, "events": events}


CASES: list[dict[str, Any]] = [
    case("whole", [STREAM], STREAM_EVENTS),
    case("one character at a time", list(STREAM), STREAM_EVENTS),
    case("crlf split across chunks", ["event: exit\r", "\ndata: 1\r", "\n\r", "\n"], [["exit", "", "1"]]),
    case("cr line ends", ["data: a\rdata: b\r\r"], [["message", "", "a\nb"]]),
    case("comments, unknown fields, no space", [": ping\nretry: 5\nfoo: x\ndata:x\n\n"], [["message", "", "x"]]),
    case("no data, no event", ["event: exit\n\n"], []),
    case("an unfinished event is dropped at the end", ["data: 1\n\ndata: 2\n"], [["message", "", "1"]]),
    case("the id carries over", ["id: 7\ndata: a\n\ndata: b\n\n"], [["message", "7", "a"], ["message", "7", "b"]]),
]

# (cases) => the events each case produced; needs SSEParser in scope (the page's global, or node's require)
RUN_CASES_JS = """(cases) => cases.map((c) => {
  const out = [];
  const parser = new SSEParser((e) => out.push([e.event, e.id, e.data]));
  c.chunks.forEach((chunk) => parser.push(chunk));
  parser.end();
  return out;
})"""
