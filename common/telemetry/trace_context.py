"""The trace context where the code needs it by hand: in log lines and Sentry events, with an
outbox row (written now, published later), in AMQP message headers, and around the domain
steps worth a span of their own.

Depends on the OpenTelemetry API only. Until common.telemetry.tracing.setup turns tracing on, every
helper here returns at once (no span objects, no context switches): tracing off costs one
boolean test per call."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanContext, SpanKind, format_span_id, format_trace_id

TRACEPARENT = "traceparent"
_tracer = trace.get_tracer("loyalty-platform")
_state = {"enabled": False}

P = ParamSpec("P")
R = TypeVar("R")


def enable() -> None:
    _state["enabled"] = True


def enabled() -> bool:
    return _state["enabled"]


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids, as hex, when a span is recording or was propagated."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format_trace_id(span_context.trace_id), format_span_id(span_context.span_id)


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: trace_id and span_id on every line logged inside a span."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def tag_sentry_event(event: dict[str, Any]) -> dict[str, Any]:
    """The trace id as a Sentry tag (searchable) and the span in an `otel` context."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("tags", {})["trace_id"] = ids[0]
        event.setdefault("contexts", {})["otel"] = {"trace_id": ids[0], "span_id": ids[1]}
    return event


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store with an outbox row; None when no
    span is current (tracing off, or work outside any request)."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get(TRACEPARENT)


def _origin(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    return extract({TRACEPARENT: traceparent})


def _links_to(origin: Context | None) -> list[Link]:
    span_context: SpanContext = trace.get_current_span(origin).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextmanager
def publishing(
    headers: MutableMapping[str, Any], exchange: str, routing_key: str, traceparent: str | None
) -> Iterator[None]:
    """A PRODUCER span around one publish of an outbox row: the child of (and linked to) the
    request that wrote the row, its own context injected into the message's headers."""
    if not enabled():
        yield
        return
    origin = _origin(traceparent)
    with _tracer.start_as_current_span(
        f"{exchange} publish",
        context=origin,
        kind=SpanKind.PRODUCER,
        links=_links_to(origin),
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange,
            "messaging.rabbitmq.destination.routing_key": routing_key,
        },
    ):
        inject(headers)
        yield


@contextmanager
def consuming(headers: MutableMapping[str, Any] | None, queue: str) -> Iterator[None]:
    """A CONSUMER span around the handling of one message: the child of (and linked to) the
    publish span whose context the message's headers carry."""
    if not enabled():
        yield
        return
    carrier = {k: v for k, v in (headers or {}).items() if isinstance(v, str)}
    origin = extract(carrier) if TRACEPARENT in carrier else None
    with _tracer.start_as_current_span(
        f"{queue} process",
        context=origin,
        kind=SpanKind.CONSUMER,
        links=_links_to(origin),
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
        },
    ):
        yield


def domain_step(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A span of its own for a domain step (eligibility, taking a use, issuing a reward). A
    rejection is an answer, not a failure: exceptions leave the span's status alone."""

    def decorate(step: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(step)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            # Below an unsampled span the step's span would be dropped: skip making it.
            if not enabled() or not trace.get_current_span().is_recording():
                return await step(*args, **kwargs)
            with _tracer.start_as_current_span(
                name, record_exception=False, set_status_on_exception=False
            ):
                return await step(*args, **kwargs)

        return traced

    return decorate


M = TypeVar("M")


def delivery_step(
    name: str,
) -> Callable[[Callable[[Any, Any, M], Awaitable[None]]], Callable[[Any, Any, M], Awaitable[None]]]:
    """Wraps a consumer's `handle(self, channel, message)` in `consuming`: every line it logs
    and every query it runs belong to the trace the message came with."""

    def decorate(
        handle: Callable[[Any, Any, M], Awaitable[None]],
    ) -> Callable[[Any, Any, M], Awaitable[None]]:
        @functools.wraps(handle)
        async def traced(owner: Any, channel: Any, message: M) -> None:
            with consuming(getattr(message, "headers", None), name):
                await handle(owner, channel, message)

        return traced

    return decorate
