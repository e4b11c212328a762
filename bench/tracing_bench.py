"""What tracing costs: ApplyPromoCode through the gateway (HTTP) and to loyalty's gRPC
address (gRPC) with tracing off, at 1% and at 100% sampling (parent-based trace-id ratio), every
traced process exporting OTLP/HTTP to a local sink that counts the spans it receives.

The settings run side by side: one freshly started system each, all loaded at once for the
same seconds. Rounds run one after another, and each round compares systems that shared the
machine's every moment. Before, the settings took turns, and the machine's state in one turn
read as tracing's cost (rounds of one setting differed by up to 30%); side by side, the noise
falls on every setting alike.

Every system is paced at the same rate (open loop), and loyalty runs behind the edge, as under
`make run`. A process's CPU per call depends on how many calls a second it serves (more calls
a loop turn, fewer wake-ups each) and on how its two workers share them. Driven closed loop,
systems sharing two cores split the machine unevenly (7,060 calls in 8 s against a
neighbour's 4,604), and straight to loyalty each system's 8 connections fell on its workers
as the kernel hashed them (72/28 in one start, 50/50 in the next): either moved a system's
CPU per call by more than tracing's cost. Paced alike, every system serves the same calls a
second; behind the edge, which gives each call to the less busy worker, its workers share
them evenly. Tracing off against off, so paced, differed by -2.5% to +3.2% a round. The pace
is PACE of the slowest system's rate in a short closed-loop probe side by side (with as many
calls in flight as loyalty takes in without refusing), so no system queues; the edge's own
CPU, the same whatever tracing does, is left out of the sums.

    .venv/bin/python -m bench.tracing_bench [--seconds 10] [--rounds 3]

Run alone, it rewrites the "Tracing overhead" section of docs/performance.md; `make bench`
appends the same section to the report it writes."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench import cpu
from bench.gateway_bench import _wait_http
from bench.load import Result, drive, percentile
from bench.loyalty_bench import PASSWORD, bearer, create_codes, make_admin, tokens
from bench.ports import free_port, wait_listening
from bench.spike import CAPACITY_CLIENTS, TAKEN, Outcome, open_loop
from bench.system import EDGE, ROOT, System, running
from common.rpc.channels import open_channels
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

REPORT = ROOT / "docs" / "performance.md"
HEADING = "## Tracing overhead"
IN_FLIGHT = 50
TARGET_DROP = 0.05
# Each round's pace: this share of the slowest system's closed-loop rate in the probe.
PACE = 0.8
PROBE_S = 3.0
SETTINGS = {"off": None, "1%": "0.01", "100%": "1.0"}
# No metrics ports (another checkout's processes may hold the defaults); a small pool.
QUIET = {
    "AUTH_METRICS_ADDR": "",
    "LOYALTY_METRICS_ADDR": "",
    "GATEWAY_METRICS_ADDR": "",
    "LOYALTY_DB_POOL_SIZE": "10",
    # No admission control: a refused call makes its closed loop wait the retry delay, and
    # with three systems sharing the machine the refusals came in bursts that swung a
    # system's rate by half. Tracing's cost is the question here, not the limiter's.
    "GRPC_MAX_IN_FLIGHT": "0",
}


def _serve_sink(port: int, spans: Synchronized[int]) -> None:
    """An OTLP/HTTP endpoint that decodes each export and counts its spans. In a process of
    its own: decoding 100% sampling's spans would otherwise take the load generator's time."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with spans.get_lock():
                spans.value += count
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def sink() -> Iterator[tuple[Synchronized[int], str]]:
    """The sink's span count (read it after the exporting processes stopped) and endpoint."""
    spawn = multiprocessing.get_context("spawn")
    spans: Synchronized[int] = spawn.Value("q", 0)  # type: ignore[assignment]
    port = free_port()
    server = spawn.Process(target=_serve_sink, args=(port, spans), daemon=True)
    server.start()
    wait_listening(f"127.0.0.1:{port}", "the span sink", 30)
    try:
        yield spans, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.join(10)


def tracing_env(ratio: str | None, endpoint: str) -> dict[str, str]:
    if ratio is None:
        return {"OTEL_TRACES_EXPORTER": "none"}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }


@dataclass
class Round:
    index: int  # the round: settings of one index ran side by side
    setting: str
    http: Result
    grpc: Result
    spans: int
    # CPU seconds the three processes spent per call: far steadier than the rate on a shared
    # machine (another tenant's load slows a round down but barely changes its CPU per call).
    http_cpu: float
    grpc_cpu: float
    # The calls a second every system was paced at, by transport.
    paces: dict[str, float] = field(default_factory=dict)


def cpu_seconds(system: System) -> dict[str, float]:
    """User + system CPU time of each of the system's three services (with their workers) so
    far; not the edge's, which tracing leaves alone."""
    pids = {name: p.pid for name, p in system.processes.items() if name != EDGE}
    return cpu.snapshot(pids)


@dataclass
class Loaded:
    """One system, ready to be driven: its two ways of making a call."""

    system: System
    over_http: Callable[[int], Awaitable[object]]
    over_grpc: Callable[[int], Awaitable[object]]


async def _loaded(system: System, stack: AsyncExitStack) -> Loaded:
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as auth_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        await asyncio.to_thread(make_admin, system)
        login = auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        admin_meta = bearer((await auth.Login(login)).access_token)
        users = await tokens(auth, 20)
    base = f"http://{system.env['GATEWAY_HTTP_ADDR']}"
    await _wait_http(base)
    # Channels with connections of their own, taken in turn, as the gateway's: one
    # connection would reach one of loyalty's two workers only (common.rpc.channels).
    channels = open_channels(system.env["LOYALTY_GRPC_ADDR"])
    for channel in channels:
        stack.push_async_callback(channel.close)
    promos = [promo_pb2_grpc.PromoServiceStub(channel) for channel in channels]
    admin = promo_pb2_grpc.PromoAdminServiceStub(channels[0])
    codes = await create_codes(admin, admin_meta, 500)
    headers = [{"Authorization": meta[0][1]} for meta in users]
    http = await stack.enter_async_context(
        aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=IN_FLIGHT))
    )

    async def over_http(i: int) -> None:
        body = {"code": codes[i % len(codes)], "tariffId": "monthly"}
        async with http.post(
            "/v1/promocodes/apply", json=body, headers=headers[i % len(headers)]
        ) as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(reply.status)

    def over_grpc(i: int) -> Awaitable[object]:
        request = promo_pb2.ApplyPromoCodeRequest(code=codes[i % len(codes)], tariff_id="monthly")
        promo = promos[i % len(promos)]
        call: Awaitable[object] = promo.ApplyPromoCode(request, metadata=users[i % len(users)])
        return call

    return Loaded(system, over_http, over_grpc)


async def _paced(
    call: Callable[[int], Awaitable[object]], name: str, rate: float, seconds: float
) -> Result:
    """`call` at `rate` a second for `seconds`, open loop: the calls made, the errors, and the
    latency from each call's due time."""

    async def one(i: int) -> Outcome:
        try:
            await call(i)
        except Exception as error:  # counted, as drive counts them; the bench goes on
            return Outcome("error", type(error).__name__)
        return TAKEN

    arrivals = await open_loop(one, rate, seconds)
    errors = sum(outcome is not TAKEN for outcome in arrivals.outcomes)
    latencies = arrivals.latencies
    return Result(
        name,
        len(latencies),
        errors,
        arrivals.elapsed,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
    )


async def _side_by_side(
    loaded: dict[str, Loaded], transport: str, seconds: float
) -> tuple[float, dict[str, tuple[Result, float]]]:
    """Every system paced at one rate at once for `seconds`: the pace, and each system's
    result and CPU per call."""
    name = f"ApplyPromoCode, {'HTTP' if transport == 'http' else 'gRPC'}"
    calls = {s: getattr(one, f"over_{transport}") for s, one in loaded.items()}
    # As many in flight as loyalty takes in without refusing: a refusal's waited-out retry
    # delay would slow the probe, and with it the pace, by the edge's doing.
    probe = await asyncio.gather(
        *(drive(name, c, CAPACITY_CLIENTS, PROBE_S) for c in calls.values())
    )
    pace = PACE * min(result.answered_rps for result in probe)
    before = {s: cpu_seconds(one.system) for s, one in loaded.items()}
    own_before = (time.process_time(), time.monotonic())
    results = await asyncio.gather(*(_paced(c, name, pace, seconds) for c in calls.values()))
    after = {s: cpu_seconds(one.system) for s, one in loaded.items()}
    busy = (time.process_time() - own_before[0]) / (time.monotonic() - own_before[1])
    print(f"  {name}: paced at {pace:.0f}/s; the load generator used {busy:.0%} of a core")
    found = {}
    for setting, result in zip(loaded, results, strict=True):
        spent = sum(after[setting][p] - before[setting][p] for p in after[setting])
        found[setting] = (result, spent / max(result.calls, 1))
    return pace, found


async def _drive_round(
    systems: dict[str, System], seconds: float
) -> dict[str, tuple[float, dict[str, tuple[Result, float]]]]:
    """Each transport's pace, and its results and CPU per call by setting."""
    async with AsyncExitStack() as stack:
        ready = await asyncio.gather(*(_loaded(s, stack) for s in systems.values()))
        loaded = dict(zip(systems, ready, strict=True))
        await asyncio.gather(*(drive("warm-up", one.over_http, IN_FLIGHT, 2) for one in ready))
        via_http = await _side_by_side(loaded, "http", seconds)
        via_grpc = await _side_by_side(loaded, "grpc", seconds)
    return {"http": via_http, "grpc": via_grpc}


def one_round(index: int, seconds: float) -> list[Round]:
    """Every setting on a system of its own, side by side."""
    with ExitStack() as stack:
        sinks = {s: stack.enter_context(sink()) for s, ratio in SETTINGS.items() if ratio}
        systems = {
            setting: stack.enter_context(
                running(
                    ["auth_service", "loyalty_service", "gateway"],
                    {**tracing_env(ratio, sinks[setting][1] if ratio else ""), **QUIET},
                    edge=True,
                )
            )
            for setting, ratio in SETTINGS.items()
        }
        measured = asyncio.run(_drive_round(systems, seconds))
        # The systems stop first (each process exports its last batch as it exits), then
        # the sinks: their counts are complete.
        stack.pop_all().close()
        spans = {s: (sinks[s][0].value if s in sinks else 0) for s in SETTINGS}
    rounds = []
    paces = {t: measured[t][0] for t in ("http", "grpc")}
    for setting in SETTINGS:
        (via_http, http_cpu), (via_grpc, grpc_cpu) = (
            measured[t][1][setting] for t in ("http", "grpc")
        )
        rounds.append(
            Round(index, setting, via_http, via_grpc, spans[setting], http_cpu, grpc_cpu, paces)
        )
        print(
            f"{setting:>5}: {via_http.line()}  cpu/call {http_cpu * 1e3:.3f} ms\n"
            f"       {via_grpc.line()}  cpu/call {grpc_cpu * 1e3:.3f} ms  spans {spans[setting]}"
        )
    return rounds


def measure(seconds: float, rounds: int) -> list[Round]:
    return [r for index in range(rounds) for r in one_round(index, seconds)]


def _of(rounds: list[Round], index: int, setting: str) -> Round:
    return next(r for r in rounds if r.index == index and r.setting == setting)


def _more_cpu(r: Round, off: Round, transport: str) -> float:
    ratio: float = getattr(r, f"{transport}_cpu") / getattr(off, f"{transport}_cpu")
    return ratio - 1


def _paired(
    rounds: list[Round],
    setting: str,
    transport: str,
    measure: Callable[[Round, Round, str], float],
) -> float:
    """The median over rounds of `measure(setting's round, off's round of the same index)`."""
    indexes = sorted({r.index for r in rounds})
    return statistics.median(
        measure(_of(rounds, i, setting), _of(rounds, i, "off"), transport) for i in indexes
    )


def _drop_by_cpu(r: Round, off: Round, transport: str) -> float:
    """The rate drop that `r`'s CPU per call against `off`'s means on a machine the calls
    keep busy, where the rate is the CPU over the CPU per call."""
    ratio: float = getattr(off, f"{transport}_cpu") / getattr(r, f"{transport}_cpu")
    return 1 - ratio


def drops(rounds: list[Round], setting: str) -> dict[str, float]:
    """What `setting` costs against tracing off beside it, by transport (median round), as a
    rate drop: the drop its CPU per call means. The systems are paced alike, so their rates
    are equal by design: the cost shows in the CPU each call takes."""
    return {
        label: _paired(rounds, setting, transport, _drop_by_cpu)
        for transport, label in (("grpc", "gRPC"), ("http", "HTTP"))
    }


def _each(rounds: list[Round], measure: Callable[[Round, Round, str], float]) -> str:
    """`measure` at 1% against off, each round, HTTP / gRPC."""
    return ", ".join(
        f"{measure(_of(rounds, i, '1%'), _of(rounds, i, 'off'), 'http'):+.1%}"
        f" / {measure(_of(rounds, i, '1%'), _of(rounds, i, 'off'), 'grpc'):+.1%}"
        for i in sorted({r.index for r in rounds})
    )


def _paces(rounds: list[Round]) -> str:
    """Each round's paces, HTTP / gRPC."""
    paces = [_of(rounds, i, "off").paces for i in sorted({r.index for r in rounds})]
    return ", ".join(f"{p.get('http', 0):.0f} / {p.get('grpc', 0):.0f}" for p in paces)


def section(rounds: list[Round], seconds: float) -> str:
    count = len({r.index for r in rounds})
    lines = [
        HEADING,
        "",
        f"`python -m bench.tracing_bench --seconds {seconds:g} --rounds {count}` (also run by"
        " `make bench`): ApplyPromoCode through the gateway (HTTP: the trace starts at the"
        " gateway) and to loyalty's gRPC address (loyalty behind the edge, as under `make"
        " run`), with tracing off and with every process exporting OTLP/HTTP to a local sink,"
        " parent-based trace-id ratio sampling at 1% and 100%. The three settings run side by"
        " side, each on a freshly started system of its own, loaded at once: each round"
        " compares systems that shared the machine's every moment. Every system is paced at"
        f" the same rate, open loop: {PACE:.0%} of the slowest one's rate in a {PROBE_S:g} s"
        f" closed-loop probe just before ({CAPACITY_CLIENTS} calls in flight, as many as"
        " loyalty takes in without refusing). Paced alike, the systems serve the same calls a"
        " second, so the CPU each call takes compares the code and not how the scheduler split"
        " the machine. Figures are medians over the rounds,"
        " each against tracing off in the same round. CPU per call is the three services'"
        " user + system time (the edge's left out) over the calls made. The target is judged"
        " on the rate drop that CPU per call means (the rate of a machine the calls keep busy"
        " is its CPU over the CPU per call).",
        "",
        "| transport | setting | paced /s | answered /s | p50 ms | p99 ms | CPU ms per call |"
        " CPU per call | rate drop, by CPU | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for transport in ("http", "grpc"):
        for setting in SETTINGS:
            own = [r for r in rounds if r.setting == setting]
            results: list[Result] = [getattr(r, transport) for r in own]
            cpu = statistics.median(getattr(r, f"{transport}_cpu") for r in own)
            figures = ["", "", "", ""]
            if setting != "off":
                more = _paired(rounds, setting, transport, _more_cpu)
                drop = _paired(rounds, setting, transport, _drop_by_cpu)
                figures[:2] = [f"{more:+.1%}", f"{drop:.1%}"]
                if setting == "1%":
                    met = "yes" if drop < TARGET_DROP else "**no**"
                    figures[2:] = [f"< {TARGET_DROP:.0%}", met]
            pace = statistics.median(r.paces.get(transport, float("nan")) for r in own)
            lines.append(
                f"| {'HTTP' if transport == 'http' else 'gRPC'} | {setting} | {pace:.0f} |"
                f" {statistics.median(r.answered_rps for r in results):.0f} |"
                f" {statistics.median(r.p50_ms for r in results):.1f} |"
                f" {statistics.median(r.p99_ms for r in results):.1f} |"
                f" {cpu * 1e3:.3f} | {figures[0]} | {figures[1]} | {figures[2]} | {figures[3]} |"
            )
    spans = {s: max(r.spans for r in rounds if r.setting == s) for s in SETTINGS}
    lines += [
        "",
        f"Each round at 1% (HTTP / gRPC): CPU per call {_each(rounds, _more_cpu)}; paced at"
        f" {_paces(rounds)} calls a second.",
        "",
        f"Spans the sink received in a round: off {spans['off']}, 1% {spans['1%']},"
        f" 100% {spans['100%']}.",
    ]
    return "\n".join(lines) + "\n"


def replace_section(report: str, new: str) -> str:
    """The report with its tracing section replaced (or appended when it has none)."""
    start = report.find(HEADING)
    if start < 0:
        return report.rstrip("\n") + "\n\n" + new
    end = report.find("\n## ", start + len(HEADING))
    rest = report[end + 1 :] if end >= 0 else ""
    return report[:start] + new + ("\n" + rest if rest else "")


def report(seconds: float, rounds: int = 3) -> str:
    """The section, measured now: what `make bench` appends to its report."""
    return section(measure(seconds, rounds), seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    new = report(args.seconds, args.rounds)
    REPORT.write_text(replace_section(REPORT.read_text(), new))
    print(new)


if __name__ == "__main__":
    main()
