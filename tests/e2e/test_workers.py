"""Loyalty started as a user starts it, with LOYALTY_WORKERS=2: one supervisor, two workers on
one port; calls reach both, a revocation reaches both, the supervisor's /metrics counts both,
SIGTERM stops everything, and a port already taken fails at start, naming it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from common.rpc.channels import open_channels
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc
from tests.conftest import free_port
from tests.e2e.processes import ROOT, run, start, stop, wait_serving
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.sync import eventually

BOUND_S = 10.0


@dataclass
class Service:
    address: str
    metrics: str
    process: subprocess.Popen[bytes]

    def workers(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _free_metrics_base() -> int:
    """A free port whose +100 and +200 neighbours (the workers' /metrics) are free too."""
    while True:
        port = free_port()
        if all(_bindable(port + step) for step in (100, 200)):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _env(auth: AuthTestServer, address: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "AUTH_GRPC_ADDR": auth.address,
        "LOYALTY_GRPC_ADDR": address,
        "LOYALTY_WORKERS": "2",
        "LOYALTY_DB_POOL_SIZE": "8",
        **more,
    }


@pytest.fixture(scope="module")
async def service(auth_server: AuthTestServer) -> AsyncIterator[Service]:
    address = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{_free_metrics_base()}"
    env = _env(auth_server, address, LOYALTY_METRICS_ADDR=metrics)
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    process = start("loyalty_service", env)
    try:
        # In a thread: the workers fetch their keys from the auth server on this event loop.
        await asyncio.to_thread(wait_serving, address, process)
        yield Service(address, metrics, process)
    finally:
        if process.poll() is None:
            stop(process)


@pytest.fixture
async def spread(service: Service) -> AsyncIterator[list[promo_pb2_grpc.PromoServiceStub]]:
    channels = open_channels(service.address, count=16)
    yield [promo_pb2_grpc.PromoServiceStub(c) for c in channels]
    for channel in channels:
        await channel.close()


async def _answers(stubs: list[promo_pb2_grpc.PromoServiceStub], user: TestUser) -> set[str]:
    async def one(stub: promo_pb2_grpc.PromoServiceStub) -> str:
        try:
            await stub.ListTariffs(promo_pb2.ListTariffsRequest(), metadata=user.metadata())
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
        return "OK"

    return set(await asyncio.gather(*(one(s) for s in stubs)))


def _served_by_worker(metrics: str) -> dict[str, float]:
    """ListTariffs calls answered OK, per worker's own /metrics port."""
    host, _, port = metrics.rpartition(":")
    counts = {}
    for index in (0, 1):
        text = httpx.get(f"http://{host}:{int(port) + 100 * (index + 1)}/metrics").text
        counts[str(index)] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("loyalty_rpc_requests_total{")
            and "ListTariffs" in line
            and 'code="OK"' in line
        )
    return counts


async def test_two_workers_share_the_port_and_both_serve(
    service: Service, spread: list[promo_pb2_grpc.PromoServiceStub], auth_server: AuthTestServer
) -> None:
    assert len(service.workers()) == 2
    user = await auth_server.new_user()
    for _ in range(4):
        assert await _answers(spread, user) == {"OK"}
    served = await asyncio.to_thread(_served_by_worker, service.metrics)
    assert all(count > 0 for count in served.values()), served
    async with httpx.AsyncClient() as client:
        gathered = (await client.get(f"http://{service.metrics}/metrics")).text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in gathered.splitlines()
        if line.startswith("loyalty_rpc_requests_total{")
        and "ListTariffs" in line
        and 'code="OK"' in line
    )
    assert total == sum(served.values()), (total, served)
    assert 'process_resident_memory_bytes{worker="1"}' in gathered


async def test_a_logout_reaches_every_worker(
    service: Service, spread: list[promo_pb2_grpc.PromoServiceStub], auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    assert await _answers(spread, user) == {"OK"}
    await auth_server.auth.Logout(auth_pb2.LogoutRequest(refresh_token=user.refresh_token))

    async def refused_everywhere() -> bool:
        return await _answers(spread, user) == {"UNAUTHENTICATED"}

    await eventually(refused_everywhere, BOUND_S, "every worker refuses the revoked token")


def test_a_taken_port_fails_at_start_naming_it(auth_server: AuthTestServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = _env(auth_server, address, LOYALTY_METRICS_ADDR="")
        done = subprocess.run(
            [sys.executable, "-m", "loyalty_service"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert f"cannot listen on {address}" in done.stderr


def test_sigterm_stops_the_supervisor_and_its_workers(service: Service) -> None:
    workers = service.workers()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    with socket.socket() as sock:
        host, _, port = service.address.rpartition(":")
        assert sock.connect_ex((host, int(port))) != 0, "the port still answers"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
