"""Where a trace starts: the rule for a trace's first span, and the two questions every
request's sampling gate (common.telemetry.sampling_gates) asks before anything else runs.

The gates ask them for every request, sampled or not, so they are answered here without the
SDK's general machinery: the parent-based sampler's `should_sample` looks up the current
context and builds a SamplingResult (about 3 µs), and the W3C propagator's `extract` builds a
Context through a second, composite propagator (about 4.5 µs). The answers are the same; a
unit test holds them to the SDK's on every rule and on malformed headers."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class NoOrphanClientSpans(Sampler):
    """Drops a CLIENT span that would start a trace (a query of an idle relay, a sweeper's
    batch): only requests and messages start traces. Everything else goes to `root`."""

    def __init__(self, root: Sampler) -> None:
        self.root = root

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self.root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClientSpans{{{self.root.get_description()}}}"


def first_decision(sampler: Sampler) -> Callable[[int], bool]:
    """Whether a request's server span, with no parent, is sampled on a trace id, as `sampler`
    decides it. The rules this service builds (tracing.sampler) are answered from the trace
    id's bits alone; any other sampler is asked."""
    root = sampler
    while True:
        if isinstance(root, ParentBased):
            root = root._root  # where the SDK keeps the rule for a trace's first span
        elif isinstance(root, NoOrphanClientSpans):
            root = root.root  # a server span is never a client's
        else:
            break
    if root is ALWAYS_ON:
        return lambda _: True
    if root is ALWAYS_OFF:
        return lambda _: False
    if type(root) is TraceIdRatioBased:
        bound, limit = root.bound, TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda trace_id: trace_id & limit < bound

    def asked(trace_id: int) -> bool:
        decision = sampler.should_sample(None, trace_id, "request", SpanKind.SERVER).decision
        return decision is Decision.RECORD_AND_SAMPLE

    return asked


# The one form every process of this system sends (version 00, no tracestate). Anything else
# is read by OpenTelemetry's own propagator.
_PLAIN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_W3C = TraceContextTextMapPropagator()


def caller_span_context(traceparent: str, tracestate: str | None = None) -> SpanContext | None:
    """The caller's span context that a W3C traceparent (and tracestate) describe, as
    OpenTelemetry's propagator reads them; None when they describe none."""
    plain = None if tracestate is not None else _PLAIN_TRACEPARENT.fullmatch(traceparent)
    if plain is None:
        carrier = {"traceparent": traceparent}
        if tracestate is not None:
            carrier["tracestate"] = tracestate
        span_context = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
        return span_context if span_context.is_valid else None
    trace_id, span_id = int(plain[1], 16), int(plain[2], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(int(plain[3], 16)))
