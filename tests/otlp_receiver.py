"""An OTLP/HTTP trace receiver for tests: a small HTTP server on loopback that decodes each
ExportTraceServiceRequest (opentelemetry-proto) into plain spans, and prints traces as trees."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    start: int
    links: tuple[tuple[str, str], ...]
    attributes: dict[str, str]


def _value(any_value: object) -> str:
    field = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return str(getattr(any_value, field)) if field else ""


def decode(body: bytes) -> list[Span]:
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    Span(
                        resource.get("service.name", ""),
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        s.name,
                        KINDS.get(s.kind, "UNSPECIFIED"),
                        s.start_time_unix_nano,
                        tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                        {a.key: _value(a.value) for a in s.attributes},
                    )
                )
    return spans


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()

    def add(self, spans: list[Span]) -> None:
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait_for(
        self, found: Callable[[list[Span]], bool], what: str, deadline_s: float = 30
    ) -> list[Span]:
        """Polls until `found` holds for the spans received so far."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            spans = self.snapshot()
            if found(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"no {what} in {deadline_s} s; received {self.snapshot()}")

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(decode(body))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass  # no access log in the test output

    return Handler


@contextmanager
def serving() -> Iterator[tuple[Receiver, str]]:
    """A receiver and the base URL to give as OTEL_EXPORTER_OTLP_ENDPOINT."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tree(spans: list[Span]) -> str:
    """The spans of one trace as an indented tree: `name [service KIND]`, children by start;
    a span linked to others shows `(links: name…)`."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in by_id else ""
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.start):
            linked = [by_id[i].name for _, i in s.links if i in by_id]
            suffix = f" (links: {', '.join(linked)})" if linked else ""
            lines.append(f"{'    ' * depth}{s.name} [{s.service} {s.kind}]{suffix}")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
