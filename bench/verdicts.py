"""The figures of one `make bench` run, and issue 27's targets judged from them: CPU per call
against the echo server's, rates against echo and gRPC, the two spikes, the backlog, tracing,
the login storm and memory. Every target gets a row, met or not, measured or not."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import spike
from bench.load import Result
from bench.system import EDGE
from bench.targets import Target, at_least, at_most, not_measured, share

LOYALTY, GATEWAY, AUTH = "loyalty_service", "gateway", "auth_service"
SERVICES = (LOYALTY, GATEWAY, AUTH, EDGE)


@dataclass(frozen=True)
class Scenario:
    """A scenario's closed-loop result, and the CPU per call (µs) of each service that served
    it; a service missing from `cpu_us` took no part in it (say, auth during the Apply half of
    a login storm: its CPU went to the logins)."""

    result: Result
    cpu_us: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Figures:
    echo: Result
    echo_us: float  # the echo server's CPU per call answered
    scenarios: dict[str, Scenario]
    capacity: float  # the closed-loop Use rate on one code ("capacity"), its calls served
    under: spike.Spike | BaseException  # the spike at 0.8 of capacity, or why it failed
    over: spike.Spike | BaseException  # at 1.5
    drain: float  # events per second
    tracing_drops: dict[str, float]  # rate drop at 1% sampling, by transport ("HTTP", "gRPC")
    memory_mb: dict[str, tuple[float, float]]


UNDER, OVER = 0.8, 1.5


def memory_met(first: float, last: float) -> bool:
    return last < 150 and (last - first) / first < 0.10


def _cpu(f: Figures, scenario: str, service: str, what: str) -> Target:
    us = f.scenarios[scenario].cpu_us.get(service, float("nan"))
    multiple = share(us, f.echo_us)
    return Target(
        what,
        f"{us:.0f} µs = {multiple:.2f}x echo's {f.echo_us:.0f} µs",
        "<= 2x echo",
        at_most(multiple, 2),
    )


def _spikes(f: Figures) -> list[Target]:
    found: list[Target] = []
    if isinstance(f.under, spike.Spike):
        found += spike.under_capacity(f.under, f.capacity)
    else:
        found.append(not_measured(f"spike at {UNDER}x capacity", "p99, errors, exact", f.under))
    if isinstance(f.over, spike.Spike):
        found += spike.over_capacity(f.over, f.capacity)
    else:
        found.append(not_measured(f"spike at {OVER}x capacity", "goodput, refusals", f.over))
    return found


def targets(f: Figures) -> list[Target]:
    use, use_http = f.scenarios["use"].result, f.scenarios["use_http"].result
    apply, storm = f.scenarios["apply"].result, f.scenarios["apply_storm"].result
    # Served calls a second: a call refused for load is not a Use.
    served, served_http = use.answered_rps, use_http.answered_rps
    over_echo, over_grpc = share(served, f.echo.rps), share(served_http, served)
    storm_multiple = share(storm.p99_ms, apply.p99_ms)
    grown = [name for name, (a, b) in f.memory_mb.items() if not memory_met(a, b)]
    largest = max((last for _, last in f.memory_mb.values()), default=float("nan"))
    return [
        _cpu(f, "use", LOYALTY, "loyalty's CPU per Use (gRPC, all its processes)"),
        _cpu(f, "use_http", GATEWAY, "gateway's CPU per HTTP Use (all its processes)"),
        Target(
            "Use over gRPC, 50 in flight, against echo",
            f"{served:.0f} served / {f.echo.rps:.0f} rps = {over_echo:.2f}",
            ">= 0.3",
            at_least(over_echo, 0.3),
        ),
        Target(
            "Use through the gateway (HTTP), 50 in flight, against gRPC",
            f"{served_http:.0f} / {served:.0f} served a second = {over_grpc:.2f}, p99"
            f" {use_http.p99_ms:.1f} ms",
            ">= 0.8, p99 <= 100 ms",
            at_least(over_grpc, 0.8) and at_most(use_http.p99_ms, 100),
        ),
        *_spikes(f),
        Target(
            "backlog of 10,000 events drained",
            f"{f.drain:.0f} events/s",
            ">= 5000/s",
            at_least(f.drain, 5000),
        ),
        *(
            Target(
                f"tracing at 1% sampling, {transport}: rate drop (by CPU per call, paced)",
                f"{drop:.1%}",
                "< 5%",
                drop < 0.05,
            )
            for transport, drop in f.tracing_drops.items()
        ),
        Target(
            "Apply's p99 during a login storm, against alone",
            f"{storm.p99_ms:.1f} / {apply.p99_ms:.1f} ms = {storm_multiple:.2f}x",
            "<= 2x",
            at_most(storm_multiple, 2),
        ),
        Target(
            "memory, every process (table below)",
            f"largest {largest:.0f} MB" + (f"; over: {', '.join(grown)}" if grown else ""),
            "< 150 MB, < +10%",
            bool(f.memory_mb) and not grown,
        ),
    ]


def cpu_table(f: Figures, spikes: list[Scenario]) -> list[str]:
    """The headline: each scenario's CPU per call of each service, against the echo server's."""
    lines = [
        "| scenario | rps | p50 ms | p99 ms | errors | loyalty µs/call (x echo) |"
        " gateway µs/call (x echo) | auth µs/call (x echo) | edge µs/call (x echo) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {f.echo.name} | {f.echo.rps:.0f} | {f.echo.p50_ms:.1f} | {f.echo.p99_ms:.1f} |"
        f" {f.echo.errors} | echo server: {f.echo_us:.0f} (1.0x) | | | |",
    ]
    for scenario in [*f.scenarios.values(), *spikes]:
        r = scenario.result
        cells = [_times_echo(scenario.cpu_us.get(s), f.echo_us) for s in SERVICES]
        lines.append(
            f"| {r.name} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
            f" {' | '.join(cells)} |"
        )
    return lines


def _times_echo(us: float | None, echo_us: float) -> str:
    if us is None:
        return ""
    return f"{us:.0f} ({share(us, echo_us):.1f}x)"


def spike_scenario(name: str, s: spike.Spike) -> Scenario:
    """A spike as a row of the CPU table: its rate is its goodput, its errors every answer
    that was neither a decision nor an overload refusal."""
    calls = s.taken + s.refused
    result = Result(
        name, calls, s.errors, calls / s.goodput if s.goodput else 1.0, s.p50_ms, s.p99_ms
    )
    return Scenario(result, s.cpu_us)
