"""Loyalty started as a user starts it, with LOYALTY_WORKERS=2: one supervisor, two workers on
one port; calls reach both, a revocation reaches both, the supervisor's /metrics counts both,
a worker killed is replaced while the other keeps answering, a crash loop gives up, SIGTERM
stops everything, and a port already taken fails at start, naming it."""

from __future__ import annotations

import asyncio
import json
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

from bench.ports import free_port
from common.rpc.channels import open_channels
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc
from tests.e2e.processes import ROOT, run, stop, wait_serving
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.sync import eventually

BOUND_S = 10.0


@dataclass
class Service:
    address: str
    metrics: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_lines(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def workers(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _free_metrics_base() -> int:
    """A free port whose +100 and +200 neighbours (the workers' /metrics) are free too."""
    return free_port(neighbours=(100, 200))


def _env(auth: AuthTestServer, address: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "AUTH_GRPC_ADDR": auth.address,
        "LOYALTY_GRPC_ADDR": address,
        "LOYALTY_WORKERS": "2",
        "LOYALTY_DB_POOL_SIZE": "8",
        **more,
    }


def _start_logged(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The service with its log in a file: a pipe nobody reads would fill up and stall it."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "loyalty_service"], env=env, cwd=ROOT, stderr=sink
        )


@pytest.fixture(scope="module")
async def service(
    auth_server: AuthTestServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    address = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{_free_metrics_base()}"
    env = _env(
        auth_server, address, LOYALTY_METRICS_ADDR=metrics, SERVICE_REPLICA="3", LOG_LEVEL="INFO"
    )
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    log = tmp_path_factory.mktemp("workers") / "loyalty.log"
    process = _start_logged(env, log)
    try:
        # In a thread: the workers fetch their keys from the auth server on this event loop.
        await asyncio.to_thread(wait_serving, address, process)
        yield Service(address, metrics, process, log)
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


async def _keep_calling(
    stubs: list[promo_pb2_grpc.PromoServiceStub], user: TestUser, stop: asyncio.Event
) -> list[str]:
    answers: list[str] = []
    while not stop.is_set():
        answers += await _answers(stubs, user)
    return answers


async def _replaced(service: Service, killed: int) -> bool:
    workers = service.workers()
    return len(workers) == 2 and killed not in workers


async def test_a_killed_worker_is_replaced_while_the_other_keeps_answering(
    service: Service, spread: list[promo_pb2_grpc.PromoServiceStub], auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    killed = service.workers()[0]
    stop = asyncio.Event()
    calling = asyncio.create_task(_keep_calling(spread, user, stop))
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: _replaced(service, killed), 30, "a new worker in the dead one's place")
    stop.set()
    # Only the calls in flight on the killed worker may have failed; the service never stopped.
    assert set(await calling) <= {"OK", "UNAVAILABLE"}
    assert service.process.poll() is None

    async def both_serve() -> bool:
        # New connections each time: one made before the new worker listened stays with the
        # old one for good.
        fresh = open_channels(service.address, count=16)
        try:
            stubs = [promo_pb2_grpc.PromoServiceStub(c) for c in fresh]
            if await _answers(stubs, user) != {"OK"}:
                return False
        finally:
            for channel in fresh:
                await channel.close()
        try:
            served = await asyncio.to_thread(_served_by_worker, service.metrics)
        except httpx.HTTPError:
            return False  # the new worker's /metrics is not up yet
        return all(count > 0 for count in served.values())

    await eventually(both_serve, 60, "the new worker serves calls")
    restarted = [line for line in service.log_lines() if line["event"] == "worker_restarted"]
    assert restarted and restarted[0]["worker"] == "supervisor"


def test_every_log_line_names_its_replica_and_worker(service: Service) -> None:
    lines = service.log_lines()
    assert lines and all(line["replica"] == "3" for line in lines)
    served = {line["worker"] for line in lines if line["event"] == "rpc"}
    assert served == {"0", "1"}, served
    assert {line["worker"] for line in lines if line["event"] == "workers_started"} == {
        "supervisor"
    }


async def test_a_refused_call_logs_its_reason(
    service: Service, spread: list[promo_pb2_grpc.PromoServiceStub], auth_server: AuthTestServer
) -> None:
    user = await auth_server.new_user()
    missing = promo_pb2.ApplyPromoCodeRequest(code="NO-SUCH-CODE-26", tariff_id="monthly")
    with pytest.raises(grpc.aio.AioRpcError):
        await spread[0].ApplyPromoCode(missing, metadata=user.metadata())

    async def logged() -> bool:
        return any(
            line["event"] == "rpc"
            and str(line["method"]).endswith("/ApplyPromoCode")
            and line.get("reason") == "PROMO_CODE_NOT_FOUND"
            for line in service.log_lines()
        )

    await eventually(logged, 10, "the call's log line names PROMO_CODE_NOT_FOUND")


def test_a_crash_loop_is_reported_and_gives_up(tmp_path: Path) -> None:
    """Workers that die at once, again and again: the supervisor restarts them with its
    back-off, then names the loop and exits 1 instead of spinning for ever."""
    env = {
        **os.environ,
        "RESTART_FIRST_DELAY_SECONDS": "0.05",
        "RESTART_CRASH_LOOP_DEATHS": "3",
        "RESTART_CRASH_LOOP_SECONDS": "60",
    }
    script = (
        "import sys; from common.telemetry import logs; from common.processes import supervisor;"
        "logs.configure('probe');"
        f"sys.exit(supervisor.supervise(supervisor.Service("
        f"'tests.e2e.crashing_worker', 2, '127.0.0.1:{free_port()}', '', 1.0)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    assert names.count("worker_restarted") >= 2 and names[-1] == "worker_crash_loop", names
    assert "died 3 times within 60 s" in str(events[-1]["error"])


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
