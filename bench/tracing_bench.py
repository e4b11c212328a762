"""What tracing costs: ApplyPromoCode through the gateway (HTTP) and straight to loyalty
(gRPC) with tracing off, at 1% and at 100% sampling (parent-based trace-id ratio), every
process exporting OTLP/HTTP to a local sink that counts the spans it receives. Each setting
runs on a freshly started system, settings interleaved over `--rounds`; the best round of
each is compared (the machine's noise only ever slows a round down).

    .venv/bin/python -m bench.tracing_bench [--seconds 10] [--rounds 2]

Run alone, it rewrites the "Tracing overhead" section of docs/performance.md; `make bench`
appends the same section to the report it writes."""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench import cpu
from bench.gateway_bench import _wait_http
from bench.load import Result, drive
from bench.loyalty_bench import PASSWORD, bearer, create_codes, make_admin, tokens
from bench.system import ROOT, System, running
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

REPORT = ROOT / "docs" / "performance.md"
HEADING = "## Tracing overhead"
IN_FLIGHT = 50
TARGET_DROP = 0.05
SETTINGS = {"off": None, "1%": "0.01", "100%": "1.0"}
# No metrics ports (another checkout's processes may hold the defaults); a small pool.
QUIET = {
    "AUTH_METRICS_ADDR": "",
    "LOYALTY_METRICS_ADDR": "",
    "GATEWAY_METRICS_ADDR": "",
    "LOYALTY_DB_POOL_SIZE": "10",
}


class Sink:
    """An OTLP/HTTP endpoint that decodes each export and counts its spans."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def received(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self._lock:
            self.spans += count


@contextmanager
def sink() -> Iterator[tuple[Sink, str]]:
    counts = Sink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            counts.received(self.rfile.read(int(self.headers.get("content-length", "0"))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield counts, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    setting: str
    http: Result
    grpc: Result
    spans: int
    # CPU seconds the three processes spent per call: on a shared machine, far steadier than
    # the rate (another tenant's load slows a round down but barely changes its CPU per call).
    http_cpu: float
    grpc_cpu: float


def cpu_seconds(system: System) -> dict[str, float]:
    """User + system CPU time of each of the system's processes (with its workers) so far."""
    return cpu.snapshot({name: process.pid for name, process in system.processes.items()})


async def _measured(system: System, run: Awaitable[Result]) -> tuple[Result, float]:
    before = cpu_seconds(system)
    result = await run
    after = cpu_seconds(system)
    calls = max(result.calls, 1)
    each = {name.split("_")[0]: (after[name] - before[name]) / calls * 1e3 for name in after}
    print(f"  {result.name}: CPU ms per call " + ", ".join(f"{k} {v:.3f}" for k, v in each.items()))
    return result, sum(after[name] - before[name] for name in after) / calls


async def _apply_both(
    system: System, seconds: float
) -> tuple[tuple[Result, float], tuple[Result, float]]:
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as auth_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        make_admin(system)
        login = auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        admin_meta = bearer((await auth.Login(login)).access_token)
        users = await tokens(auth, 20)
    base = f"http://{system.env['GATEWAY_HTTP_ADDR']}"
    await _wait_http(base)
    async with grpc.aio.insecure_channel(system.env["LOYALTY_GRPC_ADDR"]) as channel:
        promo = promo_pb2_grpc.PromoServiceStub(channel)
        codes = await create_codes(promo_pb2_grpc.PromoAdminServiceStub(channel), admin_meta, 500)
        headers = [{"Authorization": meta[0][1]} for meta in users]
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(base, connector=connector) as http:

            async def over_http(i: int) -> None:
                body = {"code": codes[i % len(codes)], "tariffId": "monthly"}
                async with http.post(
                    "/v1/promocodes/apply", json=body, headers=headers[i % len(headers)]
                ) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(reply.status)

            def over_grpc(i: int) -> Awaitable[object]:
                request = promo_pb2.ApplyPromoCodeRequest(
                    code=codes[i % len(codes)], tariff_id="monthly"
                )
                call: Awaitable[object] = promo.ApplyPromoCode(
                    request, metadata=users[i % len(users)]
                )
                return call

            await drive("warm-up", over_http, IN_FLIGHT, 2)
            via_http = await _measured(
                system, drive("ApplyPromoCode, HTTP", over_http, IN_FLIGHT, seconds)
            )
            via_grpc = await _measured(
                system, drive("ApplyPromoCode, gRPC", over_grpc, IN_FLIGHT, seconds)
            )
    return via_http, via_grpc


def one_round(setting: str, seconds: float) -> Round:
    with sink() as (counts, endpoint):
        extra = {**tracing_env(SETTINGS[setting], endpoint), **QUIET}
        with running(["auth_service", "loyalty_service", "gateway"], extra) as system:
            (via_http, http_cpu), (via_grpc, grpc_cpu) = asyncio.run(_apply_both(system, seconds))
        # Stopped: every process flushed its last batch at exit.
        found = Round(setting, via_http, via_grpc, counts.spans, http_cpu, grpc_cpu)
    print(
        f"{setting:>5}: {via_http.line()}  cpu/call {http_cpu * 1e3:.3f} ms\n"
        f"       {via_grpc.line()}  cpu/call {grpc_cpu * 1e3:.3f} ms  spans {found.spans}"
    )
    return found


def measure(seconds: float, rounds: int) -> list[Round]:
    return [one_round(setting, seconds) for _ in range(rounds) for setting in SETTINGS]


def best(rounds: list[Round], setting: str, transport: str) -> Result:
    results: list[Result] = [getattr(r, transport) for r in rounds if r.setting == setting]
    return max(results, key=lambda result: result.rps)


def least_cpu(rounds: list[Round], setting: str, transport: str) -> float:
    spent: list[float] = [getattr(r, f"{transport}_cpu") for r in rounds if r.setting == setting]
    return min(spent)


def drops(rounds: list[Round], setting: str) -> dict[str, float]:
    """The rate drop of `setting` against tracing off, by transport (best rounds)."""
    return {
        label: 1 - best(rounds, setting, transport).rps / best(rounds, "off", transport).rps
        for transport, label in (("grpc", "gRPC"), ("http", "HTTP"))
    }


def section(rounds: list[Round], seconds: float) -> str:
    lines = [
        HEADING,
        "",
        f"`python -m bench.tracing_bench --seconds {seconds:g} --rounds"
        f" {len(rounds) // len(SETTINGS)}` (also run by `make bench`): ApplyPromoCode with"
        f" {IN_FLIGHT} calls in flight, through the gateway (HTTP: the trace starts at the"
        " gateway) and straight to loyalty (gRPC), with tracing off and with every process"
        " exporting OTLP/HTTP to a local sink, parent-based trace-id ratio sampling at 1% and"
        " 100%. Each setting on a freshly started system, settings interleaved; best round of"
        " each. Drops and CPU against tracing off. CPU per call is the three processes' user +"
        " system time over the calls made: other tenants of a shared machine slow the rate of a"
        " round far more than they change its CPU per call.",
        "",
        "| transport | setting | rps | p50 ms | p99 ms | rate drop | CPU ms per call |"
        " CPU per call | target (rate drop) | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for transport in ("http", "grpc"):
        off = best(rounds, "off", transport)
        off_cpu = least_cpu(rounds, "off", transport)
        for setting in SETTINGS:
            result = best(rounds, setting, transport)
            cpu = least_cpu(rounds, setting, transport)
            drop = 1 - result.rps / off.rps
            target, met, drop_text, cpu_text = "", "", "", ""
            if setting != "off":
                drop_text, cpu_text = f"{drop:.1%}", f"{cpu / off_cpu - 1:+.1%}"
            if setting == "1%":
                target = f"< {TARGET_DROP:.0%}"
                met = "yes" if drop < TARGET_DROP else "**no**"
            lines.append(
                f"| {'HTTP' if transport == 'http' else 'gRPC'} | {setting} |"
                f" {result.rps:.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} | {drop_text} |"
                f" {cpu * 1e3:.3f} | {cpu_text} | {target} | {met} |"
            )
    spans = {s: max(r.spans for r in rounds if r.setting == s) for s in SETTINGS}
    lines += [
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


def report(seconds: float, rounds: int = 2) -> str:
    """The section, measured now: what `make bench` appends to its report."""
    return section(measure(seconds, rounds), seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    new = report(args.seconds, args.rounds)
    REPORT.write_text(replace_section(REPORT.read_text(), new))
    print(new)


if __name__ == "__main__":
    main()
