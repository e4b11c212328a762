"""Whether a backend call is traced: only when the request it serves is sampled.

The edge (common.telemetry.sampling_gates) has already decided the request's sampling; an
unsampled request runs under a non-recording span. Its backend calls take channels without
OpenTelemetry's client interceptor and carry the request's trace context themselves, flagged
unsampled, so that the backend drops the trace as the gateway did instead of sampling it
afresh."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

from common.telemetry import trace_context


def unsampled_context() -> list[tuple[str, str]] | None:
    """None when the current request is sampled (its calls go through the interceptor, which
    starts their spans and propagates them); otherwise the metadata to propagate: the W3C
    traceparent of the unsampled request, or nothing when there is no trace at all."""
    if not trace_context.enabled():
        return []
    span_context = trace.get_current_span().get_span_context()
    if span_context.trace_flags.sampled:
        return None
    if not span_context.is_valid:
        return []
    ids = f"{format_trace_id(span_context.trace_id)}-{format_span_id(span_context.span_id)}"
    metadata = [(trace_context.TRACEPARENT, f"00-{ids}-{span_context.trace_flags:02x}")]
    if span_context.trace_state:
        metadata.append(("tracestate", span_context.trace_state.to_header()))
    return metadata
