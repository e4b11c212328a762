"""Tracing with the real processes: auth, loyalty and the gateway started as a user starts
them, exporting OTLP/HTTP to a receiver inside the test. One Apply through the gateway is one
trace across gateway, loyalty and SQL; one SetUserStatus is one trace through the outbox,
the relay's publish and loyalty's consumer; the log lines carry the trace id; and a process
with tracing off exports nothing and propagates nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aio_pika
import httpx
import pytest

from bench.ports import free_port
from common.storage.migrations import drop_database
from tests.conftest import TEST_ENV
from tests.e2e.processes import ROOT, run, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email
from tests.otlp_receiver import Receiver, Span, serving, tree

APPLY = "/loyalty.promo.v1.PromoService/ApplyPromoCode"
SET_STATUS = "/loyalty.auth.v1.UserAdminService/SetUserStatus"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, object]]:
        """The process's JSON log lines so far (anything else it printed is skipped)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found


@dataclass
class TracedSystem:
    receiver: Receiver
    env: dict[str, str]
    base: str
    processes: dict[str, Process]
    admin_token: str


def _start(name: str, module: str, env: dict[str, str], logs: Path) -> Process:
    path = logs / f"{name}.log"
    stream: IO[bytes] = path.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", module], env=env, cwd=ROOT, stdout=stream, stderr=stream
    )
    stream.close()
    return Process(name, popen, path)


def _wait_http(base: str, process: Process, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, process.log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} did not become healthy")


def _traced_env(endpoint: str) -> dict[str, str]:
    """This module's own databases, Redis prefix and broker names, so that no in-process
    test service (untraced) publishes or consumes the rows and messages traced here."""
    return {
        **os.environ,
        "AUTH_DATABASE_URL": TEST_ENV["AUTH_DATABASE_URL"] + "_traced",
        "LOYALTY_DATABASE_URL": TEST_ENV["LOYALTY_DATABASE_URL"] + "_traced",
        "REDIS_KEY_PREFIX": TEST_ENV["REDIS_KEY_PREFIX"] + "traced:",
        "USER_EVENTS_EXCHANGE": TEST_ENV["USER_EVENTS_EXCHANGE"] + ".traced",
        "PROMO_EVENTS_EXCHANGE": TEST_ENV["PROMO_EVENTS_EXCHANGE"] + ".traced",
        "LOYALTY_EVENTS_QUEUE": TEST_ENV["LOYALTY_EVENTS_QUEUE"] + ".traced",
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "LOG_LEVEL": "INFO",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _admin_token(env: dict[str, str], base: str) -> str:
    email = unique_email("tracer")
    create = [sys.executable, "-m", "auth_service", "create-admin", "--email", email]
    run(create, {**env, "AUTH_ADMIN_PASSWORD": PASSWORD})
    login = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token: str = login.json()["accessToken"]
    return token


async def _drop_broker_names(url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        for name in names:
            channel = await connection.channel()
            await channel.exchange_delete(name)
            await channel.close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedSystem]:
    logs = tmp_path_factory.mktemp("traced-logs")
    with serving() as (receiver, endpoint):
        env = _traced_env(endpoint)
        for service in ("auth_service", "loyalty_service"):
            run([sys.executable, "-m", service, "migrate"], env)
        processes: dict[str, Process] = {}
        try:
            processes["auth"] = _start("auth", "auth_service", env, logs)
            wait_serving(env["AUTH_GRPC_ADDR"], processes["auth"].popen)
            processes["loyalty"] = _start("loyalty", "loyalty_service", env, logs)
            wait_serving(env["LOYALTY_GRPC_ADDR"], processes["loyalty"].popen)
            processes["gateway"] = _start("gateway", "gateway", env, logs)
            base = f"http://{env['GATEWAY_HTTP_ADDR']}"
            _wait_http(base, processes["gateway"])
            yield TracedSystem(receiver, env, base, processes, _admin_token(env, base))
        finally:
            for process in processes.values():
                stop(process.popen)
            for variable in ("AUTH_DATABASE_URL", "LOYALTY_DATABASE_URL"):
                asyncio.run(drop_database(env[variable]))
            names = [env["USER_EVENTS_EXCHANGE"], env["PROMO_EVENTS_EXCHANGE"]]
            asyncio.run(_drop_broker_names(env["RABBITMQ_URL"], names))


def _user(system: TracedSystem) -> tuple[str, dict[str, str]]:
    email = unique_email("traced")
    with httpx.Client(base_url=system.base, timeout=10) as http:
        user = http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert user.status_code == 200, user.text
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = login.json()["accessToken"]
    return user.json()["userId"], {"Authorization": f"Bearer {token}"}


def _one(spans: list[Span], **where: str) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, f"{where}: {found}"
    return found[0]


def _ancestors(span: Span, spans: list[Span]) -> list[Span]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def test_an_apply_through_the_gateway_is_one_trace(traced: TracedSystem) -> None:
    code = f"TRACE{uuid.uuid4().hex[:8].upper()}"
    admin = {"Authorization": f"Bearer {traced.admin_token}"}
    body = {"code": code, "allUsers": True, "fixedPrice": {"amountMinor": "100"}}
    made = httpx.post(f"{traced.base}/v1/admin/promocodes", json=body, headers=admin)
    assert made.status_code == 200, made.text
    _, auth = _user(traced)
    request_id = uuid.uuid4().hex
    quote = httpx.post(
        f"{traced.base}/v1/promocodes/apply",
        json={"code": code, "tariffId": "yearly"},
        headers={**auth, "x-request-id": request_id},
    )
    assert quote.status_code == 200, quote.text

    def applied(spans: list[Span]) -> bool:
        servers = [s for s in spans if s.name == APPLY and s.kind == "SERVER"]
        gateway = [s for s in spans if s.service == "gateway" and s.kind == "SERVER"]
        return any(g.trace_id == s.trace_id for s in servers for g in gateway)

    traced.receiver.wait_for(applied, "Apply trace with the gateway's span")
    server = _one(traced.receiver.snapshot(), name=APPLY, kind="SERVER")
    # The SQL spans end before the server span, so all are exported by the time it is.
    spans = traced.receiver.trace(server.trace_id)
    print(f"\ntrace {server.trace_id}:\n{tree(spans)}")

    http = _one(spans, service="gateway", kind="SERVER")
    assert http.parent_id == "" and http.name == "POST /v1/promocodes/apply"
    client = _one(spans, service="gateway", kind="CLIENT", name=APPLY)
    assert server.service == "loyalty" and server.parent_id == client.span_id
    assert client.parent_id == http.span_id
    sql = [s for s in spans if s.service == "loyalty" and s.attributes.get("db.system")]
    assert sql, tree(spans)
    assert all(server in _ancestors(s, spans) for s in sql)
    eligibility = _one(spans, name="promo.eligibility")
    assert eligibility.parent_id == server.span_id
    assert {s.trace_id for s in spans} == {http.trace_id}

    lines = [
        line
        for line in traced.processes["loyalty"].lines()
        if line.get("event") == "rpc" and line.get("request_id") == request_id
    ]
    assert lines and all(line["trace_id"] == server.trace_id for line in lines), lines
    assert lines[0]["span_id"] in {s.span_id for s in spans}
    gateway_lines = [
        line
        for line in traced.processes["gateway"].lines()
        if line.get("event") == "http" and line.get("request_id") == request_id
    ]
    assert [line["trace_id"] for line in gateway_lines] == [server.trace_id]


def test_taking_a_use_is_a_domain_step_over_its_sql(traced: TracedSystem) -> None:
    code = f"TRACE{uuid.uuid4().hex[:8].upper()}"
    admin = {"Authorization": f"Bearer {traced.admin_token}"}
    body = {"code": code, "allUsers": True, "fixedPrice": {"amountMinor": "100"}}
    assert httpx.post(f"{traced.base}/v1/admin/promocodes", json=body, headers=admin).is_success
    _, auth = _user(traced)
    used = httpx.post(
        f"{traced.base}/v1/promocodes/use", json={"code": code, "tariffId": "yearly"}, headers=auth
    )
    assert used.status_code == 200, used.text

    def taken(spans: list[Span]) -> bool:
        return any(s.name == "promo.take_use" for s in spans)

    spans = traced.receiver.wait_for(taken, "promo.take_use span")
    step = _one(spans, name="promo.take_use")
    use = "/loyalty.promo.v1.PromoService/UsePromoCode"

    def served(spans: list[Span]) -> bool:
        # The server span ends (and is exported) after the step inside it.
        return any(s.name == use and s.trace_id == step.trace_id for s in spans)

    traced.receiver.wait_for(served, "UsePromoCode server span")
    trace = traced.receiver.trace(step.trace_id)
    server = _one(trace, name=use, kind="SERVER")
    assert server in _ancestors(step, trace)
    inside = [s.attributes.get("db.statement", "") for s in trace if step in _ancestors(s, trace)]
    # The whole use is one statement (loyalty_service/store/sql/loyalty_use.sql).
    statement = "SELECT * FROM loyalty_use($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    assert [st for st in inside if st] == [statement], tree(trace)


def _token_of_unknown_key() -> str:
    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    header = part({"alg": "EdDSA", "typ": "JWT", "kid": f"unknown-{uuid.uuid4().hex}"})
    return f"{header}.{part({'sub': 'nobody'})}.c2ln"


def test_a_jwks_fetch_joins_the_request_that_needed_it(traced: TracedSystem) -> None:
    """A token naming an unknown key makes loyalty fetch auth's JWKS inside the request (at
    most once per few seconds, hence the retries): auth's GetJwks span is in its trace."""
    jwks = "/loyalty.auth.v1.AuthService/GetJwks"

    def fetched(spans: list[Span]) -> bool:
        answer = httpx.get(
            f"{traced.base}/v1/tariffs",
            headers={"Authorization": f"Bearer {_token_of_unknown_key()}"},
        )
        assert answer.status_code == 401, answer.text
        return any(s.name == jwks and s.service == "auth" and s.parent_id for s in spans)

    traced.receiver.wait_for(fetched, "GetJwks inside a request", deadline_s=60)
    spans = traced.receiver.snapshot()
    served = next(s for s in spans if s.name == jwks and s.service == "auth" and s.parent_id)
    trace = traced.receiver.trace(served.trace_id)
    print(f"\ntrace {served.trace_id}:\n{tree(trace)}")
    names = [(s.name, s.service, s.kind) for s in reversed(_ancestors(served, trace))]
    assert names == [
        ("GET /v1/tariffs", "gateway", "SERVER"),
        ("/loyalty.promo.v1.PromoService/ListTariffs", "gateway", "CLIENT"),
        ("/loyalty.promo.v1.PromoService/ListTariffs", "loyalty", "SERVER"),
        (jwks, "loyalty", "CLIENT"),
    ]


def test_a_status_change_is_one_trace_through_the_outbox_and_rabbitmq(
    traced: TracedSystem,
) -> None:
    user_id, _ = _user(traced)
    admin = {"Authorization": f"Bearer {traced.admin_token}"}
    blocked = httpx.post(
        f"{traced.base}/v1/admin/users/{user_id}/status",
        json={"status": "USER_STATUS_BLOCKED"},
        headers=admin,
    )
    assert blocked.status_code == 200, blocked.text

    def consumed(spans: list[Span]) -> bool:
        servers = {s.trace_id for s in spans if s.name == SET_STATUS and s.kind == "SERVER"}
        # Each process exports on its own schedule: wait for every one's part.
        parts = {(s.service, s.kind) for s in spans if s.trace_id in servers}
        return {("gateway", "SERVER"), ("auth", "PRODUCER"), ("loyalty", "CONSUMER")} <= parts

    traced.receiver.wait_for(consumed, "every process's spans of the SetUserStatus trace")
    server = _one(traced.receiver.snapshot(), name=SET_STATUS, kind="SERVER")
    spans = traced.receiver.trace(server.trace_id)
    print(f"\ntrace {server.trace_id}:\n{tree(spans)}")
    assert _one(spans, service="gateway", kind="SERVER").name == (
        "POST /v1/admin/users/{user_id}/status"
    )
    in_request = {server.span_id} | {s.span_id for s in spans if server in _ancestors(s, spans)}

    publish = _one(spans, service="auth", kind="PRODUCER")
    # The relay published later, from its own loop: a child of the request's context as it
    # was stored with the outbox row, and linked to it.
    assert publish.parent_id in in_request
    assert publish.links == ((server.trace_id, publish.parent_id),)
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == (
        "user.status_changed"
    )
    consumer = _one(spans, service="loyalty", kind="CONSUMER")
    assert consumer.parent_id == publish.span_id
    assert consumer.links == ((server.trace_id, publish.span_id),)
    mirror_writes = [s for s in spans if consumer in _ancestors(s, spans)]
    assert any(s.attributes.get("db.system") for s in mirror_writes), tree(spans)


def test_tracing_is_off_unless_asked_for(traced: TracedSystem, tmp_path: Path) -> None:
    """A gateway with no OTEL_TRACES_EXPORTER (but an endpoint, as a shared environment may
    have) exports nothing and sends no trace context: loyalty, traced, starts a trace of its
    own for the request instead of joining one."""

    def tariff_servers(spans: list[Span]) -> dict[str, Span]:
        return {
            s.span_id: s for s in spans if s.name.endswith("/ListTariffs") and s.kind == "SERVER"
        }

    with serving() as (silent, endpoint):
        env = {
            **{k: v for k, v in traced.env.items() if k != "OTEL_TRACES_EXPORTER"},
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        }
        gateway = _start("untraced", "gateway", env, tmp_path)
        base = f"http://{env['GATEWAY_HTTP_ADDR']}"
        try:
            _wait_http(base, gateway)
            _, auth = _user(traced)
            request_id = uuid.uuid4().hex
            earlier = set(tariff_servers(traced.receiver.snapshot()))
            tariffs = httpx.get(f"{base}/v1/tariffs", headers={**auth, "x-request-id": request_id})
            assert tariffs.status_code == 200, tariffs.text
        finally:
            assert stop(gateway.popen) == 0
        # Stopped: the exporter, had there been one, flushed at exit.
        assert silent.requests == 0 and silent.spans == []
    logged = [line for line in gateway.lines() if line.get("request_id") == request_id]
    assert logged and all("trace_id" not in line for line in logged), logged

    spans = traced.receiver.wait_for(
        lambda spans: bool(tariff_servers(spans).keys() - earlier), "loyalty's span of it"
    )
    new = [s for i, s in tariff_servers(spans).items() if i not in earlier]
    assert [s.parent_id for s in new] == [""]
