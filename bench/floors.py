"""What the stack itself costs a call, measured beside the echo ceiling: the floors under issue
27's CPU and spike targets (bench.floor_server runs them).

- one statement: a grpc.aio server whose calls each run one statement through the services'
  pool (common.storage.db). A use cannot cost less: it is at least one call and one statement.
- a refusal: every call refused for load by the services' interceptor, with its RetryInfo.
- HTTP to gRPC: uvicorn on httptools forwarding each request to the echo server on the
  gateway's channels, with a token and a request id as metadata. The gateway cannot cost less.
- HAProxy in front of the echo (bench.edge_proxy): its own CPU per call it refuses with the
  services' overload status, and per call it forwards.

From the refusal's cost and the Use's follows the most a server refusing in Python can serve
when 1.5 times its capacity arrives (`goodput_bound`), and the most it could with the proxy
refusing instead.

    .venv/bin/python -m bench.floors [--seconds 8]"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc

from bench import cpu, edge_proxy
from bench.ceilings import echo, echo_served, started
from bench.echo_server import ECHO
from bench.ports import free_port
from bench.spike import OVER_GOODPUT
from bench.system import PG
from common.storage.migrations import drop_database, ensure_database

IN_FLIGHT = 50
PAYLOAD = b"x" * 64


@dataclass(frozen=True)
class Floors:
    statement_us: float
    refusal_us: float
    http_us: float
    # HAProxy in front (bench.edge_proxy): its CPU per refusal, and per call it forwards.
    proxy_refusal_us: float
    proxy_forward_us: float


def goodput_bound(use_us: float, refusal_us: float, offered: float) -> float:
    """The share of its capacity a CPU-bound server still serves when `offered` times its
    capacity arrives and it refuses the excess itself: each second's CPU (capacity times a use)
    pays for the uses served and for every refusal, so g*use + (offered - g)*refusal = use."""
    if refusal_us >= use_us:
        return 0.0
    return max(0.0, min(1.0, (use_us - offered * refusal_us) / (use_us - refusal_us)))


def refusal_for_goodput(use_us: float, goodput: float, offered: float) -> float:
    """The dearest refusal that still lets `goodput` of capacity be served at `offered` times
    it: `goodput_bound`'s equation solved for the refusal."""
    return use_us * (1 - goodput) / (offered - goodput)


async def _closed_loop(call: Callable[[], Awaitable[Any]], seconds: float) -> int:
    """Calls answered, `IN_FLIGHT` at a time; a refusal counts as answered and is not waited
    out (the refusal floor is made of them)."""
    answered = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal answered
        while time.perf_counter() < stop_at:
            try:
                await call()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
            answered += 1

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return answered


async def _cpu_per_call(
    process: subprocess.Popen[bytes], call: Callable[[], Awaitable[Any]], seconds: float
) -> float:
    await _closed_loop(call, 1)  # warm-up: connections, prepared statements
    before = cpu.process_seconds(process.pid)
    return cpu.process_per_call_us(process.pid, before, await _closed_loop(call, seconds))


async def _grpc_floor(argv: list[str], seconds: float) -> float:
    async with echo_served("bench.floor_server", *argv) as (process, call):
        return await _cpu_per_call(process, lambda: call(PAYLOAD), seconds)


async def statement(seconds: float) -> float:
    dsn = f"{PG}/bench_floor_{uuid.uuid4().hex[:8]}"
    await ensure_database(dsn)
    try:
        return await _grpc_floor(["statement", dsn], seconds)
    finally:
        await drop_database(dsn)


async def _http_ready(session: aiohttp.ClientSession) -> None:
    for _ in range(300):
        try:
            async with session.post("/", data=PAYLOAD) as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the HTTP floor server did not start")


async def http(seconds: float) -> float:
    target = f"127.0.0.1:{free_port()}"
    address = f"127.0.0.1:{free_port()}"
    with (
        started("bench.echo_server", target),
        started("bench.floor_server", address, "http", target) as process,
    ):
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(f"http://{address}", connector=connector) as session:
            await _http_ready(session)
            headers = {"Authorization": "Bearer " + "t" * 400}

            async def call() -> None:
                async with session.post("/v1/echo", data=PAYLOAD, headers=headers) as reply:
                    await reply.read()

            return await _cpu_per_call(process, call, seconds)


async def _proxy_cpu(in_flight: int, seconds: float) -> float:
    """HAProxy's own CPU per call in front of the echo: every call refused (0 in flight), or
    every call forwarded (a cap the load never reaches)."""
    back, front = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with started("bench.echo_server", back):
        async with grpc.aio.insecure_channel(back) as direct:
            await asyncio.wait_for(direct.channel_ready(), 30)
        with edge_proxy.running(front, back, in_flight) as proxy:
            async with grpc.aio.insecure_channel(front) as channel:
                await asyncio.wait_for(channel.channel_ready(), 30)
                call = channel.unary_unary(ECHO)
                return await _cpu_per_call(proxy, lambda: call(PAYLOAD), seconds)


async def measure(seconds: float) -> Floors:
    return Floors(
        statement_us=await statement(seconds),
        refusal_us=await _grpc_floor(["refusal"], seconds),
        http_us=await http(seconds),
        proxy_refusal_us=await _proxy_cpu(0, seconds),
        proxy_forward_us=await _proxy_cpu(10 * IN_FLIGHT, seconds),
    )


def section(floors: Floors, echo_us: float, use_us: float, offered: float) -> list[str]:
    """The report's lines: each floor as a multiple of echo's CPU per call, and the goodput
    bound at `offered` times capacity from the Use's CPU (`use_us`) and a refusal's."""
    rows = [
        ("grpc.aio, one statement through the services' pool (a use's least)", floors.statement_us),
        ("grpc.aio behind the services' interceptor, refused with RetryInfo", floors.refusal_us),
        ("uvicorn on httptools, forwarded to echo on the gateway's channels", floors.http_us),
        ("HAProxy in front, its CPU per call refused with RetryInfo", floors.proxy_refusal_us),
        ("HAProxy in front, its CPU per call forwarded", floors.proxy_forward_us),
    ]
    bound = goodput_bound(use_us, floors.refusal_us, offered)
    proxied_use = use_us + floors.proxy_forward_us
    proxied = goodput_bound(proxied_use, floors.proxy_refusal_us, offered)
    needed = refusal_for_goodput(use_us, OVER_GOODPUT, offered)
    return [
        "## Floors: what the stack costs before the services' own work",
        "",
        "`bench.floors`, in the same run, driven like the echo (50 calls in flight): servers"
        " that do only what no design on this stack can skip. The CPU targets leave the"
        " services' own work (the token, the request's rules, admission, deadlines, the"
        " mapping, logs and metrics) what lies between a floor and 2x echo.",
        "",
        "| floor | CPU per call | x echo |",
        "|---|---|---|",
        *(f"| {name} | {us:.0f} µs | {us / echo_us:.2f} |" for name, us in rows),
        "",
        f"A refusal in Python costs {floors.refusal_us:.0f} µs and a Use (one code)"
        f" {use_us:.0f} µs, so a server that refuses the excess itself serves at most"
        f" {bound:.2f} of its capacity when {offered}x capacity arrives (every second's CPU pays"
        " for the uses and the refusals: g*use + (offered - g)*refusal = use); the target asks"
        f" {OVER_GOODPUT}, which needs a refusal under {needed:.0f} µs. gRPC's core"
        " refuses for less (`GRPC_MAX_PENDING`), but as CANCELLED, with no retry delay.",
        "",
        f"With HAProxy in front refusing the excess with the same status, a use costs"
        f" {proxied_use:.0f} µs with the proxy's share and a refusal"
        f" {floors.proxy_refusal_us:.0f} µs: at most {proxied:.2f} of that (smaller) capacity,"
        f" which is {proxied * use_us / proxied_use:.2f} of the capacity without the proxy"
        " (on the same cores). The system runs it in front of loyalty (the edge,"
        " `common/processes/edge`), and the spikes above went through it; `python -m"
        " bench.edge_spike` runs the two spikes through it and straight to loyalty, paired"
        " (docs/performance-notes.md).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="the stack's floors beside the echo ceiling")
    parser.add_argument("--seconds", type=float, default=8)
    seconds = parser.parse_args().seconds
    result, echo_us = asyncio.run(echo(seconds))
    print(f"{result.line()}  server CPU {echo_us:.0f} µs per call")
    floors = asyncio.run(measure(seconds))
    for name, us in vars(floors).items():
        print(f"{name:14} {us:6.0f} µs per call = {us / echo_us:.2f}x echo")


if __name__ == "__main__":
    main()
