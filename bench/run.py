"""`make bench`: every scenario against the real system, next to the machine's ceilings, written
to docs/performance.md. Machines are noisy: the ratios from one run are what count.

    .venv/bin/python -m bench.run [--seconds 10] [--memory-requests 100000]
        [--history-rows 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import ceilings, history, spike, tracing_bench
from bench.gateway_bench import _wait_http
from bench.load import Result, drive, percentile
from bench.loyalty_bench import PASSWORD, bearer, create_codes, make_admin, tokens
from bench.spread import spread_stub
from bench.sync_bench import _drain_rate, _refusal_delays
from bench.system import ROOT, System, running, worker_pids
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

REPORT = ROOT / "docs" / "performance.md"
AuthStub, PromoStub = auth_pb2_grpc.AuthServiceStub, promo_pb2_grpc.PromoServiceStub
Call = Callable[[int], Awaitable[object]]


@dataclass
class Row:
    result: Result
    ceiling: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Clients:
    """The calls every scenario makes, on channels and sessions opened once."""

    def __init__(self, system: System) -> None:
        self.system = system

    async def open(self) -> None:
        env = self.system.env
        # Several connections each: every worker of a service gets its share (bench.spread).
        self.auth, self.auth_channels = spread_stub(env["AUTH_GRPC_ADDR"], AuthStub)
        self.promo, self.loyalty_channels = spread_stub(env["LOYALTY_GRPC_ADDR"], PromoStub)
        admin = promo_pb2_grpc.PromoAdminServiceStub(self.loyalty_channels[0])
        make_admin(self.system)
        login = auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        admin_meta = bearer((await self.auth.Login(login)).access_token)
        self.users = await tokens(self.auth, 50)
        self.codes = await create_codes(admin, admin_meta, 1000)
        self.hot = await create_codes(admin, admin_meta, 1)
        self.base = f"http://{env['GATEWAY_HTTP_ADDR']}"
        await _wait_http(self.base)
        connector = aiohttp.TCPConnector(limit=200)
        self.http = aiohttp.ClientSession(self.base, connector=connector)
        self.headers = [{"Authorization": meta[0][1]} for meta in self.users]
        self.logins = [f"login-{i}@bench.example" for i in range(50)]
        await asyncio.gather(
            *(
                self.auth.Register(auth_pb2.RegisterRequest(email=e, password=PASSWORD))
                for e in self.logins
            )
        )

    async def close(self) -> None:
        await self.http.close()
        for channel in [*self.auth_channels, *self.loyalty_channels]:
            await channel.close()

    def apply(self, i: int) -> Awaitable[object]:
        request = promo_pb2.ApplyPromoCodeRequest(code=self.codes[i % 1000], tariff_id="monthly")
        call: Awaitable[object] = self.promo.ApplyPromoCode(request, metadata=self.users[i % 50])
        return call

    def use(self, i: int, codes: list[str] | None = None) -> Awaitable[object]:
        pool = codes or self.codes
        request = promo_pb2.UsePromoCodeRequest(code=pool[i % len(pool)], tariff_id="monthly")
        call: Awaitable[object] = self.promo.UsePromoCode(request, metadata=self.users[i % 50])
        return call

    async def http_post(self, path: str, i: int) -> None:
        body = {"code": self.codes[i % 1000], "tariffId": "monthly"}
        async with self.http.post(path, json=body, headers=self.headers[i % 50]) as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(reply.status)

    def login(self, i: int) -> Awaitable[object]:
        request = auth_pb2.LoginRequest(email=self.logins[i % 50], password=PASSWORD)
        call: Awaitable[object] = self.auth.Login(request)
        return call

    def jwks(self, i: int) -> Awaitable[object]:
        call: Awaitable[object] = self.auth.GetJwks(auth_pb2.GetJwksRequest())
        return call


async def scenarios(clients: Clients, seconds: float) -> dict[str, Result]:
    c = clients
    results = {
        "apply": await drive("ApplyPromoCode, gRPC, 50 clients, spread", c.apply, 50, seconds),
        "use": await drive("UsePromoCode, gRPC, 50 clients, spread", c.use, 50, seconds),
        "hot": await drive(
            "UsePromoCode, gRPC, 200 clients, one code", lambda i: c.use(i, c.hot), 200, seconds
        ),
        "apply_http": await drive(
            "ApplyPromoCode, HTTP, 50 clients",
            lambda i: c.http_post("/v1/promocodes/apply", i),
            50,
            seconds,
        ),
        "use_http": await drive(
            "UsePromoCode, HTTP, 50 clients",
            lambda i: c.http_post("/v1/promocodes/use", i),
            50,
            seconds,
        ),
    }
    storm, _ = await asyncio.gather(
        drive("ApplyPromoCode, gRPC, 50 clients, during a login storm", c.apply, 50, seconds),
        drive("Login, 50 clients without pause", c.login, 50, seconds),
    )
    results["apply_storm"] = storm
    return results


def every_process(processes: dict[str, Any]) -> dict[str, int]:
    """Each service's process, and each of its workers when it has several
    (common.processes.supervisor)."""
    found = {}
    for name, process in processes.items():
        found[name] = process.pid
        for index, pid in enumerate(worker_pids(process.pid)):
            found[f"{name} worker {index}"] = pid
    return found


async def memory(clients: Clients, total: int) -> dict[str, tuple[float, float]]:
    """RSS of each process (each worker, and its supervisor) after 10,000 and after `total`
    requests (through the gateway to loyalty, and GetJwks to auth)."""
    processes = every_process(clients.system.processes)
    found: dict[str, list[float]] = {name: [] for name in processes}
    done = 0
    for mark in (10_000, total):
        count = mark - done
        await asyncio.gather(
            drive(
                "memory: apply over HTTP",
                lambda i: clients.http_post("/v1/promocodes/apply", i),
                50,
                3600,
                max_calls=count,
            ),
            drive("memory: GetJwks", clients.jwks, 20, 3600, max_calls=count),
        )
        done = mark
        for name, pid in processes.items():
            found[name].append(rss_mb(pid))
    return {name: (values[0], values[1]) for name, values in found.items()}


def ratio(value: float, ceiling: float) -> float:
    return value / ceiling if ceiling else float("nan")


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| scenario | rps | p50 ms | p99 ms | ceiling | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.result
        ratio_text = f"{row.ratio:.2f}" if row.ratio is not None else ""
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {r.name} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {row.ceiling} |"
            f" {ratio_text} | {row.target} | {met} |"
        )
    return lines


def build_rows(results: dict[str, Result], echo: Result, pg: tuple[float, float]) -> list[Row]:
    apply, use, hot = results["apply"], results["use"], results["hot"]
    apply_http, use_http, storm = results["apply_http"], results["use_http"], results["apply_storm"]
    return [
        Row(echo, "", None, "", None),
        Row(
            apply,
            f"echo {echo.rps:.0f}",
            ratio(apply.rps, echo.rps),
            ">= 0.7",
            ratio(apply.rps, echo.rps) >= 0.7,
        ),
        Row(
            use,
            f"echo {echo.rps:.0f}; pgbench {pg[0]:.0f}",
            ratio(use.rps, echo.rps),
            ">= 0.5, p99 <= 25 ms",
            ratio(use.rps, echo.rps) >= 0.5 and use.p99_ms <= 25,
        ),
        Row(
            hot,
            f"spread use {use.rps:.0f}; pgbench one code {pg[1]:.0f}",
            ratio(hot.rps, use.rps),
            ">= 0.8 of spread",
            ratio(hot.rps, use.rps) >= 0.8,
        ),
        Row(
            apply_http,
            f"gRPC {apply.rps:.0f}",
            ratio(apply_http.rps, apply.rps),
            ">= 0.8, p99 <= 30 ms",
            ratio(apply_http.rps, apply.rps) >= 0.8 and apply_http.p99_ms <= 30,
        ),
        Row(
            use_http,
            f"gRPC {use.rps:.0f}",
            ratio(use_http.rps, use.rps),
            ">= 0.8, p99 <= 30 ms",
            ratio(use_http.rps, use.rps) >= 0.8 and use_http.p99_ms <= 30,
        ),
        Row(
            storm,
            f"p99 alone {apply.p99_ms:.1f} ms",
            storm.p99_ms / apply.p99_ms,
            "p99 <= 2x alone",
            storm.p99_ms <= 2 * apply.p99_ms,
        ),
    ]


def write_report(
    rows: list[Row],
    sync: tuple[list[float], float],
    memory_mb: dict[str, tuple[float, float]],
    pg: tuple[float, float],
    total: int,
    more: list[str] | None = None,
) -> str:
    delays, drain = sync
    p50, p99 = (percentile(delays, share) * 1000 for share in (0.5, 0.99))
    lines = [
        "# Performance",
        "",
        f"Written by `make bench` (`python -m bench.run`) on {datetime.now(UTC):%Y-%m-%d %H:%M}"
        " UTC,"
        " on this project's 2-core machine, against the real processes (auth, loyalty, gateway)"
        " on loopback PostgreSQL, Redis and RabbitMQ. The load generator runs in its own process"
        " with a fixed number of calls in flight for a bounded time. Ratios from one run are what"
        " count; absolute figures move with the machine's noise.",
        "",
        f"Ceilings measured in the same run: a bare grpc.aio echo server driven by the same"
        f" generator; pgbench (32 clients) on a use's SQL: {pg[0]:.0f} tps over 1000 codes,"
        f" {pg[1]:.0f} tps on one code.",
        "",
        *table(rows),
        "",
        "| sync | figure | target | met |",
        "|---|---|---|---|",
        f"| SetUserStatus → loyalty refuses, {len(delays)} changes | p50 {p50:.1f} ms, p99"
        f" {p99:.1f} ms | p99 <= 50 ms | {'yes' if p99 <= 50 else '**no**'} |",
        f"| backlog of 10,000 events drained | {drain:.0f} events/s | >= 5000/s |"
        f" {'yes' if drain >= 5000 else '**no**'} |",
        "",
        f"| process | RSS after 10,000 requests | after {total:,} | growth | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, (first, last) in memory_mb.items():
        growth = (last - first) / first
        met = last < 150 and growth < 0.10
        lines.append(
            f"| {name} | {first:.0f} MB | {last:.0f} MB | {growth:+.1%} | < 150 MB, < +10% |"
            f" {'yes' if met else '**no**'} |"
        )
    lines += ["", *(more or [])] if more else []
    lines += [
        "",
        "What limits each missed target, with a profile, and what would lift it:"
        " `docs/performance-notes.md`.",
    ]
    return "\n".join(lines) + "\n"


async def measure(system: System, seconds: float, total: int) -> tuple[Any, ...]:
    clients = Clients(system)
    await clients.open()
    try:
        results = await scenarios(clients, seconds)
        memory_mb = await memory(clients, total)
    finally:
        await clients.close()
    return results, memory_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--history-rows", type=int, default=history.ROWS)
    args = parser.parse_args()
    echo = asyncio.run(ceilings.echo(args.seconds))
    pg = asyncio.run(ceilings.pgbench(args.seconds))
    with running(["auth_service", "loyalty_service", "gateway"]) as system:
        results, memory_mb = asyncio.run(measure(system, args.seconds, args.memory_requests))
        delays = asyncio.run(_refusal_delays(system, 200))
        try:
            surge = spike.table(asyncio.run(spike.measure(system, 1000, 30)))
        except Exception as error:  # the rest of the run is still worth its report
            surge = spike.failed(error)
    drain = asyncio.run(_drain_rate(10_000))
    report = write_report(
        build_rows(results, echo, pg),
        (delays, drain),
        memory_mb,
        pg,
        args.memory_requests,
        surge,
    )
    report += "\n" + tracing_bench.report(args.seconds)
    report += "\n" + "\n".join(history.run(args.seconds, args.history_rows)) + "\n"
    REPORT.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
