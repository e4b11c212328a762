"""Starts the real processes for a benchmark, on fresh databases it drops afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.ports import free_port
from common.processes.edge import environments
from common.storage.migrations import drop_database

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


def worker_pids(pid: int) -> list[int]:
    """The workers a service's process started (common.processes.supervisor); none when it runs
    alone."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class System:
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    def address(self, variable: str) -> str:
        return self.env[variable]


def _wait_serving(address: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise SystemExit(f"{address} did not start")


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        "AUTH_DATABASE_URL": f"{PG}/bench_auth_{run}",
        "LOYALTY_DATABASE_URL": f"{PG}/bench_loyalty_{run}",
        "REDIS_KEY_PREFIX": f"bench:{run}:",
        "USER_EVENTS_EXCHANGE": f"loyalty.auth.events.bench.{run}",
        "LOYALTY_EVENTS_QUEUE": f"loyalty.user-events.bench.{run}",
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        # The abuse limits are measured by bench.abuse_bench; the other benchmarks go past them.
        "AUTH_LOGIN_LIMIT_PER_EMAIL_ADDRESS": "1000000",
        "AUTH_LOGIN_LIMIT_PER_EMAIL": "1000000",
        "AUTH_LOGIN_LIMIT_PER_ADDRESS": "1000000",
        "AUTH_REGISTER_LIMIT_PER_ADDRESS": "1000000",
        "LOYALTY_PROMO_FAILURES_PER_USER": "1000000",
        "LOYALTY_PROMO_FAILURES_PER_ADDRESS": "1000000",
        "LOG_LEVEL": "WARNING",
        # No /metrics: the default ports may be taken on a shared machine, and the benchmarks
        # read memory from /proc.
        "AUTH_METRICS_ADDR": "",
        "LOYALTY_METRICS_ADDR": "",
        "GATEWAY_METRICS_ADDR": "",
        **(extra or {}),
    }


def _edged(env: dict[str, str], folder: str) -> tuple[dict[str, str], dict[str, str]]:
    """Loyalty's and the edge's environments when the edge takes loyalty's address, as under
    `make run`; `env` gains LOYALTY_DIRECT_ADDR."""
    env["LOYALTY_DIRECT_ADDR"] = f"127.0.0.1:{free_port()}"
    sockets = os.path.join(folder, "loyalty-")
    return environments(env, env["LOYALTY_GRPC_ADDR"], env["LOYALTY_DIRECT_ADDR"], sockets)


# The processes by the name their CPU and memory are reported under: a service's module, or
# "edge" for HAProxy in front of loyalty (its wrapper, common.processes.edge, and the proxy).
EDGE = "edge"
MODULES = {EDGE: "common.processes.edge"}


@contextmanager
def running(
    modules: list[str],
    extra: dict[str, str] | None = None,
    source: Path = ROOT,
    edge: bool = False,
) -> Iterator[System]:
    """The processes, run from the code in `source` (another checkout, to compare); with
    `edge`, loyalty behind the edge as `make run` starts it: the system's LOYALTY_GRPC_ADDR is
    the edge's, and LOYALTY_DIRECT_ADDR loyalty's own."""
    env = bench_env(extra)
    for module in ("auth_service", "loyalty_service"):
        subprocess.run([sys.executable, "-m", module, "migrate"], env=env, check=True, cwd=source)
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as folder:
        own = {m: env for m in modules}
        if edge:
            own["loyalty_service"], own[EDGE] = _edged(env, folder)
        processes = {
            name: subprocess.Popen(
                [sys.executable, "-m", MODULES.get(name, name)], env=given, cwd=source
            )
            for name, given in own.items()
        }
        try:
            for name, variable in (
                ("auth_service", "AUTH_GRPC_ADDR"),
                ("loyalty_service", "LOYALTY_DIRECT_ADDR"),
                ("loyalty_service", "LOYALTY_GRPC_ADDR"),
            ):
                if name in processes and variable in env:
                    _wait_serving(env[variable])
            yield System(env, processes)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(30)
            for variable in ("AUTH_DATABASE_URL", "LOYALTY_DATABASE_URL"):
                asyncio.run(drop_database(env[variable]))
