"""What this machine can do at all: a bare gRPC echo, and pgbench on the SQL a use needs."""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import grpc

from bench import cpu
from bench.echo_server import ECHO
from bench.load import Result, drive
from bench.ports import free_port
from bench.system import PG, ROOT
from common.storage.migrations import drop_database, ensure_database

# The statements of a use, as loyalty runs them: the purchase, the code's counter, the user's.
USE_SQL = """
\\set user random(1, 100000)
BEGIN;
INSERT INTO purchases (code, user_id) VALUES (:code, :user);
UPDATE codes SET uses = uses + 1 WHERE code = :code AND (max_uses = 0 OR uses < max_uses);
INSERT INTO user_uses AS x (code, user_id, uses) VALUES (:code, :user, 1)
  ON CONFLICT (code, user_id) DO UPDATE SET uses = x.uses + 1;
END;
"""
SCHEMA = """
CREATE TABLE codes (code int PRIMARY KEY, max_uses int NOT NULL, uses int NOT NULL DEFAULT 0);
INSERT INTO codes SELECT g, 0 FROM generate_series(1, 1000) g;
CREATE TABLE purchases (id bigserial PRIMARY KEY, code int NOT NULL, user_id int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE user_uses (code int, user_id int, uses int NOT NULL, PRIMARY KEY (code, user_id));
"""


@contextmanager
def started(module: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """A benchmark server (bench.echo_server, bench.floor_server) in a process of its own, so
    that its CPU is apart from the load generator's."""
    process = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


@asynccontextmanager
async def echo_served(
    module: str, *argv: str
) -> AsyncIterator[tuple[subprocess.Popen[bytes], grpc.aio.UnaryUnaryMultiCallable]]:
    """A server of bench.Echo started on a free port, and its Echo method once it answers."""
    address = f"127.0.0.1:{free_port()}"
    with started(module, address, *argv) as process:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            yield process, channel.unary_unary(ECHO)


async def echo(seconds: float, in_flight: int = 50) -> tuple[Result, float]:
    """The echo's closed-loop rate, and its server's CPU per call answered, in µs."""
    async with echo_served("bench.echo_server") as (server, call):
        payload = b"x" * 64
        await drive("warm-up", lambda _: call(payload), in_flight, 1)
        before = cpu.process_seconds(server.pid)
        result = await drive("gRPC echo (ceiling)", lambda _: call(payload), in_flight, seconds)
        return result, cpu.process_per_call_us(server.pid, before, result.calls - result.errors)


async def _prepare(dsn: str) -> None:
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


def _pgbench(dsn: str, seconds: float, hot: bool) -> float:
    code = "\\set code 1\n" if hot else "\\set code random(1, 1000)\n"
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(code + USE_SQL)
    done = subprocess.run(
        ["pgbench", "-n", "-c", "32", "-j", "2", "-T", str(int(seconds)), "-f", script.name, dsn],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(script.name).unlink()
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


async def pgbench(seconds: float) -> tuple[float, float]:
    """Transactions per second of a use's SQL: spread over 1000 codes, and all on one code."""
    dsn = f"{PG}/bench_pgbench_{uuid.uuid4().hex[:8]}"
    await _prepare(dsn)
    try:
        spread = await asyncio.to_thread(_pgbench, dsn, seconds, False)
        hot = await asyncio.to_thread(_pgbench, dsn, seconds, True)
        return spread, hot
    finally:
        await drop_database(dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description="the echo ceiling alone")
    parser.add_argument("--seconds", type=float, default=10)
    result, us = asyncio.run(echo(parser.parse_args().seconds))
    print(f"{result.line()}  server CPU {us:.0f} µs per call")


if __name__ == "__main__":
    main()
