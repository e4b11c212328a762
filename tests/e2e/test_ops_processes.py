"""Processes stop gracefully on SIGTERM and wait for their dependencies at start."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pamqp.commands import Basic

from auth_service.keys import new_private_pem
from bench.ports import free_port
from common.messaging.broker import CONTENT_TYPE, declare_exchange
from common.storage.migrations import drop_database
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import PG, TEST_ENV
from tests.e2e.processes import ROOT, run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email
from tests.fixtures.cleanup import _drop_broker_names
from tests.fixtures.sync import eventually, has_queue_consumer
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
    env = _quiet_env(AUTH_GRPC_ADDR=address, AUTH_DATABASE_URL=through)
    await asyncio.to_thread(
        run,
        [sys.executable, "-m", "auth_service", "migrate"],
        {**env, "AUTH_DATABASE_URL": TEST_ENV["AUTH_DATABASE_URL"]},
    )
    auth = Logged("auth_service", env)
    try:
        # Postgres "down" until the service has failed to reach it and is backing off.
        await asyncio.to_thread(auth.wait_for, "waiting_for_dependency", 30)
        assert auth.process.poll() is None, "the service gave up instead of waiting"
        await proxy.open()
        await asyncio.to_thread(wait_serving, address, auth.process, 60)
    finally:
        # Stopped from a thread: the proxy runs on this loop and must keep forwarding.
        assert await asyncio.to_thread(auth.stop) == 0
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

        async def scrape() -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
            writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
            text = (await reader.read()).decode()
            writer.close()
            return text

        async def exported() -> bool:
            text = await scrape()
            return all(
                name in text
                for name in (
                    'auth_rpc_requests_total{code="OK",method="/loyalty.auth.v1.AuthService/GetJwks"}',
                    "auth_rpc_duration_seconds_bucket",
                    "auth_outbox_backlog",
                    "auth_outbox_oldest_age_seconds",
                )
            )

        await eventually(exported, 15, "metrics on the metrics port")
        text = await scrape()
        # Only auth's own: nothing of loyalty's or the gateway's, not even at 0.
        foreign_families = ("loyalty_", "gateway_", "rpc_requests_total")
        for foreign in foreign_families:
            assert f"\n{foreign}" not in text, foreign
    finally:
        assert stop(process) == 0


class Logged:
    """A service process whose stderr (its JSON log) is read as it runs, so a test can wait
    for a line without the pipe filling up."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))

    def wait_for(self, text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"exited: {''.join(self.lines)[-2000:]}"
            assert time.monotonic() < deadline, f"no {text!r} in the log within {seconds} s"
            time.sleep(0.05)

    def stop(self) -> int:
        code = stop(self.process)
        self._reader.join(10)  # the last lines, written just before the exit
        return code

    def exited(self, seconds: float) -> int:
        code = self.process.wait(seconds)
        self._reader.join(10)
        return code

    def events(self, name: str) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in list(self.lines) if line.startswith("{")]
        return [line for line in parsed if line.get("event") == name]

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _quiet_env(**variables: str) -> dict[str, str]:
    """The run's environment with metrics off (no clash on the default metrics ports)."""
    off = {"AUTH_METRICS_ADDR": "", "LOYALTY_METRICS_ADDR": "", "GATEWAY_METRICS_ADDR": ""}
    return {**os.environ, **off, "SHUTDOWN_GRACE": "3", "LOG_LEVEL": "INFO", **variables}


async def _next_status(watch: Any) -> int:
    answer = await asyncio.wait_for(watch.read(), 20)
    assert answer is not grpc.aio.EOF
    return int(answer.status)


async def test_loyalty_waits_for_auth_then_both_turn_not_serving_on_sigterm_and_exit_0() -> None:
    auth_address, loyalty_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = _quiet_env(AUTH_GRPC_ADDR=auth_address, LOYALTY_GRPC_ADDR=loyalty_address)
    await asyncio.to_thread(run, [sys.executable, "-m", "auth_service", "migrate"], env)
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    loyalty = Logged("loyalty_service", env)  # auth is not there yet
    auth: Logged | None = None
    services: list[Logged] = [loyalty]
    try:
        # Backing off, alive.
        await asyncio.to_thread(loyalty.wait_for, "waiting_for_dependency", 30)
        auth = Logged("auth_service", env)
        services.append(auth)
        await asyncio.to_thread(wait_serving, auth_address, auth.process)
        await asyncio.to_thread(wait_serving, loyalty_address, loyalty.process, 60)
        for service, address in zip(services, (loyalty_address, auth_address), strict=True):
            async with grpc.aio.insecure_channel(address) as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
                assert await _next_status(watch) == health_pb2.HealthCheckResponse.SERVING
                service.process.send_signal(signal.SIGTERM)
                assert await _next_status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
                watch.cancel()  # an open watch is a call in flight: let the drain end
            assert await asyncio.to_thread(service.exited, 30) == 0
            assert service.events("shutting_down"), service.text[-2000:]
        # A quiet start: one info line for the wait from each worker, no traceback, levels that
        # mean something.
        (started,) = loyalty.events("workers_started")
        waits = loyalty.events("waiting_for_dependency")
        assert [(w["dependency"], w["level"]) for w in waits] == [("auth", "info")] * int(
            started["count"]
        )
        assert "Traceback" not in loyalty.text and "debug_error_string" not in loyalty.text
        assert all(e["level"] == "info" for e in loyalty.events("broker_health") if e["healthy"])
    finally:
        for service in services:
            if service.process.poll() is None:
                await asyncio.to_thread(service.stop)


def _wait_http(base: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, "the gateway exited during start-up"
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base} did not answer within {seconds} s"
        time.sleep(0.1)


def test_the_gateways_request_id_is_in_its_log_line_and_in_the_backends() -> None:
    auth_address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = _quiet_env(
        AUTH_GRPC_ADDR=auth_address,
        LOYALTY_GRPC_ADDR=f"127.0.0.1:{free_port()}",
        GATEWAY_HTTP_ADDR=http_address,
    )
    run([sys.executable, "-m", "auth_service", "migrate"], env)
    auth, gateway = Logged("auth_service", env), Logged("gateway", env)
    email, secret_token = unique_email("trace"), "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2VjcmV0"
    try:
        wait_serving(auth_address, auth.process)
        _wait_http(f"http://{http_address}", gateway.process)
        answer = httpx.post(
            f"http://{http_address}/v1/auth/register",
            json={"email": email, "password": PASSWORD},
            headers={"authorization": f"Bearer {secret_token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        request_id = answer.headers["x-request-id"]  # made by the gateway: we sent none
    finally:
        assert gateway.stop() == 0  # uvicorn's graceful stop on SIGTERM
        assert auth.stop() == 0
    http_lines = [e for e in gateway.events("http") if e.get("request_id") == request_id]
    assert len(http_lines) == 1
    assert http_lines[0]["method"] == "POST" and http_lines[0]["status"] == 200
    assert isinstance(http_lines[0]["duration_ms"], float)
    rpc_lines = [e for e in auth.events("rpc") if e.get("request_id") == request_id]
    assert len(rpc_lines) == 1
    assert rpc_lines[0]["method"].endswith("/Register") and rpc_lines[0]["code"] == "OK"
    for log in (gateway.text, auth.text):
        assert email not in log and PASSWORD not in log and secret_token not in log


def test_sigterm_while_still_waiting_for_postgres_exits_0() -> None:
    database = urlsplit(TEST_ENV["AUTH_DATABASE_URL"])
    nowhere = urlunsplit(database._replace(netloc=f"{database.username}@127.0.0.1:{free_port()}"))
    auth = Logged("auth_service", _quiet_env(AUTH_DATABASE_URL=nowhere))
    try:
        auth.wait_for("waiting_for_dependency", 30)  # in its start-up backoff, before it serves
    finally:
        assert auth.stop() == 0


class _Envelopes(BaseHTTPRequestHandler):
    """A stand-in for Sentry: keeps the (possibly gzipped) envelopes POSTed to it."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding", "") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def _publish_once_routed(body: bytes, seconds: float = 30) -> None:
    """Publishes until the broker routes the message to a queue (loyalty binds its queue
    shortly after it connects; until then the broker returns the message)."""
    deadline = asyncio.get_running_loop().time() + seconds
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        # Declared as auth declares it, so the test does not race auth's relay to it.
        exchange = await declare_exchange(channel, TEST_ENV["USER_EVENTS_EXCHANGE"])
        message = aio_pika.Message(body, content_type=CONTENT_TYPE)
        while not isinstance(
            await exchange.publish(message, routing_key="user.status_changed", mandatory=True),
            Basic.Ack,
        ):
            assert asyncio.get_running_loop().time() < deadline, "no queue bound"
            await asyncio.sleep(0.1)


async def test_the_loyalty_process_reports_a_dead_letter_to_sentry() -> None:
    sentry = ThreadingHTTPServer(("127.0.0.1", 0), _Envelopes)
    threading.Thread(target=sentry.serve_forever, daemon=True).start()
    auth_address, loyalty_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    queue = f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.ops-sentry"
    env = _quiet_env(
        AUTH_GRPC_ADDR=auth_address,
        LOYALTY_GRPC_ADDR=loyalty_address,
        LOYALTY_EVENTS_QUEUE=queue,
        SENTRY_DSN=f"http://publickey@127.0.0.1:{sentry.server_address[1]}/1",
    )
    await asyncio.to_thread(run, [sys.executable, "-m", "auth_service", "migrate"], env)
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    auth, loyalty = Logged("auth_service", env), Logged("loyalty_service", env)
    try:
        await asyncio.to_thread(wait_serving, auth_address, auth.process)
        await asyncio.to_thread(wait_serving, loyalty_address, loyalty.process, 60)
        # Serving comes before the consumer: earlier tests' queues on the same exchange would
        # take a message published meanwhile, and this loyalty would never see it.
        await eventually(lambda: has_queue_consumer(queue), 30, "loyalty consuming its queue")
        await _publish_once_routed(b"\xff not an event")

        async def reported() -> bool:
            return b"dead-lettered" in b"\n".join(_Envelopes.received)

        await eventually(reported, 20, "the dead letter reported to Sentry by loyalty")
    finally:
        assert await asyncio.to_thread(loyalty.stop) == 0
        assert await asyncio.to_thread(auth.stop) == 0
        sentry.shutdown()


async def test_a_clean_start_logs_no_warning() -> None:
    """Auth, then loyalty, each with its workers, configured as in production (a signing key
    of their own: the generated development key is announced by a warning on purpose) on new
    databases and an empty Redis (a key prefix no one used: no revocation list yet, as on a
    first start): not one line at warning level or above. (On the run's databases, sessions
    other tests revoked would be restored into the new prefix, which is worth a warning.)"""
    auth_address, loyalty_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    own = uuid.uuid4().hex[:8]
    databases = {
        "AUTH_DATABASE_URL": f"{PG}/clean_auth_{own}",
        "LOYALTY_DATABASE_URL": f"{PG}/clean_loyalty_{own}",
    }
    # Broker names of its own too: the run's queue may hold what other tests left there (a
    # hostile message is dead-lettered with a warning, rightly).
    broker = {
        name: f"{TEST_ENV[name]}.clean-{own}"
        for name in ("USER_EVENTS_EXCHANGE", "LOYALTY_EVENTS_QUEUE", "PROMO_EVENTS_EXCHANGE")
    }
    try:
        await _start_cleanly(auth_address, loyalty_address, own, databases | broker)
    finally:
        for dsn in databases.values():
            await drop_database(dsn)
        await _drop_broker_names(TEST_ENV["RABBITMQ_URL"], list(broker.values()))


async def _start_cleanly(
    auth_address: str, loyalty_address: str, own: str, databases: dict[str, str]
) -> None:
    env = _quiet_env(
        **databases,
        REDIS_KEY_PREFIX=f"clean-{own}:",
        AUTH_GRPC_ADDR=auth_address,
        LOYALTY_GRPC_ADDR=loyalty_address,
        AUTH_DB_POOL_SIZE="4",
        LOYALTY_DB_POOL_SIZE="4",
        AUTH_JWT_PRIVATE_KEY=new_private_pem(),
    )
    for migrated in ("auth_service", "loyalty_service"):
        await asyncio.to_thread(run, [sys.executable, "-m", migrated, "migrate"], env)
    services = [Logged("auth_service", env)]
    try:
        await asyncio.to_thread(wait_serving, auth_address, services[0].process)
        services.append(Logged("loyalty_service", env))
        await asyncio.to_thread(wait_serving, loyalty_address, services[1].process)
    except AssertionError as error:
        raise AssertionError(f"{error}: {services[-1].text[-3000:]}") from None
    finally:
        codes = [service.stop() for service in reversed(services)]
    assert codes == [0] * len(services)
    for service in services:
        parsed = [json.loads(line) for line in service.lines if line.startswith("{")]
        assert parsed and all(line["level"] in ("info", "debug") for line in parsed), [
            line for line in parsed if line["level"] not in ("info", "debug")
        ]
        assert any(line["event"] == "revocations_restored" for line in parsed) or (
            service is services[1]
        )
