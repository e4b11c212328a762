"""The gates' shortcuts give the SDK's answers: the sampling decision for a trace's first span,
and the caller's span context a traceparent describes."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import (
    Decision,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from common.telemetry import tracing
from common.telemetry.trace_roots import caller_span_context, first_decision
from tests.fixtures.samplers import CountingSampler

RULES = [
    {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
    *(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
        for ratio in ("0", "0.01", "0.5", "1")
    ),
]


def _ids(sampler_bound: int) -> list[int]:
    draw = random.Random(27)
    ids = [draw.getrandbits(128) for _ in range(20_000)]
    # Either side of the ratio's bound, in the low 64 bits the SDK reads, under random high bits.
    for low in (0, 1, sampler_bound - 1, sampler_bound, sampler_bound + 1, (1 << 64) - 1):
        if 0 <= low < 1 << 64:
            ids += [low | draw.getrandbits(64) << 64, low or 1]
    return ids


@pytest.mark.parametrize("env", RULES, ids=lambda env: "-".join(env.values()))
def test_a_new_trace_is_sampled_as_the_sdk_samples_it(env: dict[str, str]) -> None:
    sampler = tracing.sampler(env)
    decides = first_decision(sampler)
    bound = TraceIdRatioBased(float(env.get("OTEL_TRACES_SAMPLER_ARG", "1"))).bound
    for trace_id in _ids(bound):
        expected = sampler.should_sample(None, trace_id, "rpc", SpanKind.SERVER).decision
        assert decides(trace_id) is (expected is Decision.RECORD_AND_SAMPLE), hex(trace_id)


def test_the_ratio_rule_is_read_from_the_id_without_asking_the_sampler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    decides = first_decision(tracing.sampler(env))

    def asked(*args: object, **kwargs: object) -> SamplingResult:
        raise AssertionError("the sampler was asked")

    monkeypatch.setattr(TraceIdRatioBased, "should_sample", asked)
    assert {decides(trace_id) for trace_id in _ids(1 << 63)} == {True, False}


def test_a_rule_it_does_not_know_is_asked() -> None:
    rule = CountingSampler()
    decides = first_decision(rule)
    assert [decides(n) for n in (1, 2, 3)] == [True, True, True]
    assert rule.asked == 3


TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
HEADERS = [
    f"00-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-00",
    f"00-{TRACE}-{SPAN}-03",
    f"00-{TRACE.upper()}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"ff-{TRACE}-{SPAN}-01",
    f"01-{TRACE}-{SPAN}-01",
    f"01-{TRACE}-{SPAN}-01-what-comes-later",
    f"00-{TRACE}-{SPAN}-01-not-allowed-in-00",
    f" 00-{TRACE}-{SPAN}-01\t",
    f"00-{TRACE[:-1]}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE}-{SPAN}-zz",
    f"00_{TRACE}_{SPAN}_01",
    "",
    "garbage",
    "00-" + "\u0660" * 32 + f"-{SPAN}-01",  # digits int() takes and the W3C form does not
]


@pytest.mark.parametrize("tracestate", [None, "vendor=value,other=1"])
@pytest.mark.parametrize("traceparent", HEADERS)
def test_a_caller_s_traceparent_reads_as_the_w3c_propagator_reads_it(
    traceparent: str, tracestate: str | None
) -> None:
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    extracted = trace.get_current_span(
        TraceContextTextMapPropagator().extract(carrier)
    ).get_span_context()
    expected = extracted if extracted.is_valid else None
    assert caller_span_context(traceparent, tracestate) == expected
    if expected is not None:
        got = caller_span_context(traceparent, tracestate)
        assert got is not None
        assert (got.trace_flags, got.is_remote, got.trace_state) == (
            expected.trace_flags,
            expected.is_remote,
            expected.trace_state,
        )
