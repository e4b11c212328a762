"""Processes stop gracefully on SIGTERM and wait for their dependencies at start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import grpc

from loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import TEST_ENV, free_port
from tests.e2e.processes import run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email
from tests.fixtures.sync import eventually
from tests.tcp_proxy import TcpProxy


async def test_sigterm_lets_calls_in_flight_finish_and_exits_0() -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AUTH_GRPC_ADDR": address, "SHUTDOWN_GRACE": "10"}
    await asyncio.to_thread(run, [sys.executable, "-m", "auth_service", "migrate"], env)
    process = start("auth_service", env)
    try:
        await asyncio.to_thread(wait_serving, address, process)
        async with grpc.aio.insecure_channel(address) as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            emails = [unique_email("drain") for _ in range(6)]
            await asyncio.gather(
                *(
                    auth.Register(auth_pb2.RegisterRequest(email=e, password=PASSWORD))
                    for e in emails
                )
            )
            # Six logins hash for several hundred ms in all; SIGTERM lands while they run.
            logins = [
                asyncio.ensure_future(auth.Login(auth_pb2.LoginRequest(email=e, password=PASSWORD)))
                for e in emails
            ]
            await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*logins)
            assert all(a.access_token for a in answers)
            exit_code = await asyncio.to_thread(process.wait, 30)
        assert exit_code == 0
    finally:
        if process.poll() is None:
            stop(process)


async def test_a_service_waits_for_postgres_at_start() -> None:
    database = urlsplit(TEST_ENV["AUTH_DATABASE_URL"])
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432)
    proxy.port = free_port()  # known now, listening only later
    through = urlunsplit(database._replace(netloc=f"{database.username}@127.0.0.1:{proxy.port}"))
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AUTH_GRPC_ADDR": address, "AUTH_DATABASE_URL": through}
    await asyncio.to_thread(
        run,
        [sys.executable, "-m", "auth_service", "migrate"],
        {**env, "AUTH_DATABASE_URL": TEST_ENV["AUTH_DATABASE_URL"]},
    )
    process = start("auth_service", env)
    try:
        await asyncio.sleep(2)  # Postgres "down" for two seconds of the start-up
        assert process.poll() is None, "the service gave up instead of waiting"
        await proxy.open()
        await asyncio.to_thread(wait_serving, address, process, 60)
    finally:
        # Stopped from a thread: the proxy runs on this loop and must keep forwarding.
        assert await asyncio.to_thread(stop, process) == 0
        await proxy.cut()


async def test_metrics_are_served_after_traffic() -> None:
    address, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": address,
        "AUTH_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
    }
    await asyncio.to_thread(run, [sys.executable, "-m", "auth_service", "migrate"], env)
    process = start("auth_service", env)
    try:
        await asyncio.to_thread(wait_serving, address, process)
        async with grpc.aio.insecure_channel(address) as channel:
            await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())

        async def exported() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
            writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
            text = (await reader.read()).decode()
            writer.close()
            return all(
                name in text
                for name in (
                    'rpc_requests_total{code="OK",method="/loyalty.auth.v1.AuthService/GetJwks"}',
                    "rpc_duration_seconds_bucket",
                    "outbox_backlog",
                    "outbox_oldest_age_seconds",
                )
            )

        await eventually(exported, 15, "metrics on the metrics port")
    finally:
        assert stop(process) == 0
