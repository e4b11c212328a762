"""The bench's pure judging: how a spike's answers are classified, how its books are checked,
and how a figure becomes met or not. No server and no timing here: only the arithmetic, and
one open loop over a stand-in call whose answers are counted, not timed."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from bench import admitted, compare, cpu, floors, spike, tracing_bench, verdicts
from bench.load import Result
from bench.targets import at_least, at_most
from protogen.loyalty.promo.v1 import promo_pb2


def _status(*details: Message) -> bytes:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status: bytes = status_pb2.Status(code=8, message="busy", details=packed).SerializeToString()
    return status


def test_ticks_are_utime_plus_stime_even_with_spaces_in_the_command() -> None:
    line = "42 (python -m x) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 1 2 3"
    assert cpu.ticks_of(line) == 281


def test_per_call_us_divides_each_process_delta_by_the_calls() -> None:
    spent = cpu.per_call_us({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.0}, 1000)
    assert spent == {"a": 500.0, "b": 0.0}


def test_an_overload_refusal_is_told_apart_from_a_rule_and_an_error() -> None:
    delay = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))
    info = error_details_pb2.ErrorInfo(reason="OVERLOADED")
    reason, retry = spike.details_of(_status(info, delay))
    assert (reason, retry) == ("OVERLOADED", 0.25)
    overload = spike.classify(grpc.StatusCode.RESOURCE_EXHAUSTED, reason, retry)
    assert overload == spike.Outcome("overload", "OVERLOADED", 0.25)
    bare = spike.classify(grpc.StatusCode.RESOURCE_EXHAUSTED, "", None)
    assert bare.kind == "overload" and bare.retry_s is None
    limit = spike.classify(grpc.StatusCode.FAILED_PRECONDITION, spike.LIMIT_REASON, None)
    assert limit.kind == "refused"
    throttle = spike.classify(grpc.StatusCode.RESOURCE_EXHAUSTED, spike.THROTTLE_REASON, 3.0)
    assert throttle.kind == "error"
    late = spike.classify(grpc.StatusCode.DEADLINE_EXCEEDED, "", None)
    assert late == spike.Outcome("error", "DEADLINE_EXCEEDED")
    intake = spike.classify(grpc.StatusCode.CANCELLED, "", None)
    assert intake == spike.Outcome("overload", spike.INTAKE_FULL)  # counted without a delay


def _report(taken: int, cap: int, rejections: int) -> promo_pb2.PromoCodeReport:
    report = promo_pb2.PromoCodeReport(uses_taken=taken, uses_left=cap - taken)
    report.purchases_by_status["PENDING"] = taken
    report.rejections_by_reason[spike.LIMIT_REASON] = rejections
    return report


def test_books_that_agree_with_the_answers_are_exact() -> None:
    taken, decided = Counter({0: 2, 1: 1}), Counter({0: 3, 1: 1})
    assert spike.check_books(_report(3, 10, 1), taken, decided, 10, 2, refused=1) == []


def test_a_purchase_for_a_call_answered_with_an_error_is_caught() -> None:
    # User 1's second call ran out its deadline but its use was taken all the same.
    taken, decided = Counter({0: 2, 1: 1}), Counter({0: 3, 1: 1})
    wrong = spike.check_books(_report(4, 10, 1), taken, decided, 10, 2, refused=1)
    assert any("4 uses in the books against 3 answered taken" in w for w in wrong)


def test_a_user_refused_below_the_limit_is_caught() -> None:
    taken, decided = Counter({0: 1}), Counter({0: 2})
    wrong = spike.check_books(_report(1, 10, 1), taken, decided, 10, 2, refused=1)
    assert wrong == ["1 users not at exactly min(decided attempts, 2)"]


def test_a_spike_counts_goodput_from_decisions_and_judges_refusals_by_their_slowest() -> None:
    outcomes = [
        spike.TAKEN,
        spike.TAKEN,
        spike.Outcome("refused"),
        spike.Outcome("overload", "OVERLOADED", 0.5),
        spike.Outcome("overload", "OVERLOADED", None),
        spike.Outcome("error", "DEADLINE_EXCEEDED"),
    ]
    latencies = [10.0, 12.0, 11.0, 3.0, 30.0, 1000.0]
    report = _report(2, 100, 1)
    arrivals = spike.Arrivals(latencies, outcomes, [0.0] * len(outcomes), 2.0)
    result = spike.summarize(100, 1, arrivals, report, 100, 5, {})
    assert (result.taken, result.refused, result.overloaded, result.errors) == (2, 1, 2, 1)
    assert result.overloaded_without_delay == 1
    assert result.goodput == 1.5  # 3 decisions over the 2 s until the last answer
    assert result.overload_max_ms == 30.0
    assert result.books_minus_answers == 0
    judged = {t.name.split(": ", 1)[1]: t.met for t in spike.over_capacity(result, 2.0)}
    assert judged["every overload refusal at once, with a retry delay"] is False
    assert judged["goodput (taken + refused by a rule, per second)"] is False


def test_a_figure_that_could_not_be_measured_never_meets_its_target() -> None:
    nan = float("nan")
    assert not at_most(nan, 1) and not at_least(nan, 1)
    assert at_most(1, 1) and at_least(1, 1)


def test_a_spike_past_capacity_that_refuses_nothing_but_times_out_misses_the_refusal_target() -> (
    None
):
    outcomes = [spike.TAKEN, spike.Outcome("error", "DEADLINE_EXCEEDED")]
    arrivals = spike.Arrivals([10.0, 1000.0], outcomes, [0.0, 0.0], 1.0)
    result = spike.summarize(2, 1, arrivals, _report(1, 100, 0), 100, 5, {})
    refusals = next(t for t in spike.over_capacity(result, 1.0) if "at once" in t.name)
    assert not refusals.met and "1 errors instead" in refusals.figure


def test_a_refusal_at_intake_is_waited_out_like_an_overload() -> None:
    """A CANCELLED the bench did not cause is a server's gRPC core refusing the call at intake:
    a well-behaved client waits the documented second, as for a 503 with Retry-After."""
    metadata = grpc.aio.Metadata()
    intake = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, metadata, metadata, "CANCELLED")
    assert admitted.overload_delay(intake) == admitted.INTAKE_RETRY_S
    gone = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, metadata, metadata, "down")
    assert admitted.overload_delay(gone) is None
    assert admitted.overload_delay(admitted.HttpRefused(503, 1.0)) == 1.0
    assert admitted.overload_delay(admitted.HttpRefused(503)) is None
    assert admitted.overload_delay(admitted.HttpRefused(500, 1.0)) is None


def test_goodput_bound_pays_every_refusal_out_of_the_capacity() -> None:
    # A use costs 900 µs, a refusal 300: at 1.5x, g*900 + (1.5 - g)*300 = 900 -> g = 0.75.
    assert floors.goodput_bound(900, 300, 1.5) == 0.75
    # Refusals that cost nothing leave the whole capacity to the uses.
    assert floors.goodput_bound(900, 0, 1.5) == 1.0
    # A sixth of a use is the most a refusal may cost for 0.9 at 1.5x.
    assert abs(floors.goodput_bound(900, 150, 1.5) - 0.9) < 1e-9
    # A refusal as dear as a use serves nothing once past capacity.
    assert floors.goodput_bound(900, 900, 1.5) == 0.0
    assert floors.goodput_bound(900, 800, 1.5) == 0.0


def test_refusal_for_goodput_solves_the_bound_for_the_refusal() -> None:
    # 0.9 of capacity at 1.5x: a refusal may cost a sixth of a use.
    assert abs(floors.refusal_for_goodput(900, 0.9, 1.5) - 150) < 1e-9
    for use_us, goodput in ((950, 0.9), (700, 0.76), (1200, 0.5)):
        refusal = floors.refusal_for_goodput(use_us, goodput, 1.5)
        assert abs(floors.goodput_bound(use_us, refusal, 1.5) - goodput) < 1e-9


def _use(calls: int, errors: int) -> verdicts.Scenario:
    return verdicts.Scenario(Result("use", calls, errors, 10.0, 50.0, 90.0))


def test_the_rate_targets_count_calls_served_not_calls_refused() -> None:
    # 5,000 Use calls in 10 s, 2,000 of them refused for load: 300 served a second, not 500.
    assert Result("use", 5000, 2000, 10.0, 1.0, 2.0).answered_rps == 300
    echo = Result("echo", 10_000, 0, 10.0, 1.0, 2.0)
    scenarios = {
        "use": _use(5000, 2000),
        "use_http": _use(3000, 0),
        "apply": _use(1, 0),
        "apply_storm": _use(1, 0),
    }
    figures = verdicts.Figures(
        echo, 300.0, scenarios, 300.0, ValueError(), ValueError(), 6000.0, {}, {}
    )
    by_name = {t.name: t for t in verdicts.targets(figures)}
    # 300 / 1,000 is the target's edge; 500 / 1,000 would pass it by the refusals alone.
    assert by_name["Use over gRPC, 50 in flight, against echo"].figure.startswith("300 served")
    through_gateway = by_name["Use through the gateway (HTTP), 50 in flight, against gRPC"]
    assert "= 1.00" in through_gateway.figure  # 300 against 300 served, not 300 against 500


def _round(index: int, setting: str, rps: float, cpu_ms: float) -> tracing_bench.Round:
    result = Result("ApplyPromoCode", int(rps * 10), 0, 10.0, 5.0, 9.0)
    paces = {"http": 800.0 + index, "grpc": 700.0 + index}
    return tracing_bench.Round(index, setting, result, result, 0, cpu_ms / 1e3, cpu_ms / 1e3, paces)


def test_tracing_is_judged_against_off_in_the_same_round_by_cpu_per_call() -> None:
    rounds = [
        # Round 0 ran on a busy machine: every setting slow, tracing still 4% more CPU.
        _round(0, "off", 500, 2.0),
        _round(0, "1%", 520, 2.08),
        _round(0, "100%", 300, 3.0),
        # Round 1 quiet; round 2 the same cost again.
        _round(1, "off", 1000, 1.0),
        _round(1, "1%", 1000, 1.04),
        _round(1, "100%", 600, 1.5),
        _round(2, "off", 1000, 1.0),
        _round(2, "1%", 900, 1.10),
        _round(2, "100%", 600, 1.5),
    ]
    drops = tracing_bench.drops(rounds, "1%")
    # The median round's drop that +4% CPU per call means (1 - 1/1.04), whatever the rates
    # did: round 0's 1% system even ran faster than its neighbour.
    assert abs(drops["HTTP"] - (1 - 1 / 1.04)) < 1e-9
    assert abs(drops["gRPC"] - (1 - 1 / 1.04)) < 1e-9
    report = tracing_bench.section(rounds, 10)
    assert "| HTTP | 1% | 801 | 900 |" in report and "| +4.0% | 3.8% | < 5% | yes |" in report
    assert "CPU per call +4.0% / +4.0%, +4.0% / +4.0%, +10.0% / +10.0%" in report
    assert "paced at 800 / 700, 801 / 701, 802 / 702 calls a second" in report


def test_a_paced_run_counts_every_call_made_and_the_failed_ones() -> None:
    async def call(i: int) -> None:
        if i % 4 == 0:
            raise RuntimeError("refused")

    result = asyncio.run(tracing_bench._paced(call, "paced", 400, 0.1))
    # Open loop: the calls are the schedule's (rate x seconds), whatever the answers were.
    assert result.calls == 40 and result.errors == 10
    assert result.answered_rps < result.rps


def test_tracing_past_the_target_in_the_median_round_is_not_met() -> None:
    rounds = [
        _round(i, setting, 1000, cpu_ms)
        for i, more in enumerate((1.02, 1.09, 1.20))
        for setting, cpu_ms in (("off", 1.0), ("1%", more), ("100%", 2.0))
    ]
    assert abs(tracing_bench.drops(rounds, "1%")["HTTP"] - (1 - 1 / 1.09)) < 1e-9
    assert "| < 5% | **no** |" in tracing_bench.section(rounds, 10)


def test_a_comparison_is_each_round_against_its_own_baseline_then_the_median() -> None:
    def one(this: float, baseline: float, again: float) -> compare.Round:
        return {
            compare.THIS: {"gateway": this},
            compare.BASELINE: {"gateway": baseline},
            compare.CONTROL: {"gateway": again},
        }

    # The baseline's own level moves from round to round; each round is judged against it.
    rounds = [one(90, 100, 101), one(190, 200, 196), one(66, 60, 60)]
    change = compare.against_baseline(rounds, compare.THIS)
    control = compare.against_baseline(rounds, compare.CONTROL)
    assert round(change["gateway"], 3) == -0.05  # -10%, -5%, +10%
    assert round(control["gateway"], 3) == 0.0  # +1%, -2%, 0%
    assert compare.summary(rounds)[1].split() == [
        "gateway:",
        "this",
        "-5.0%",
        "(control,",
        "baseline",
        "again:",
        "+0.0%)",
    ]
