"""One of two loyalty replicas dies in the middle of a burst of uses through the gateway
(SIGKILL; or SIGTERM with no grace, which cuts the calls in flight off with CANCELLED): every use
is answered, none as 499 (the client did not go away), and every counter stays exact.

Each use carries a request id, so it is idempotent: the gateway's channel retries UNAVAILABLE
(gRPC's retry policy, up to 5 attempts, round robin to the live replica), and the client
retries a 503 with the same request id, as docs/operations.md tells clients to."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from bench.ports import free_port
from tests.conftest import TEST_ENV
from tests.e2e.processes import run, start, stop, wait_serving
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.gateway import gateway_settings, open_client

USES = 1000
USERS = 200
KILL_AFTER = 300  # answered uses before the SIGKILL
# A client retries a 503 with the same request id, 0.2 s apart; on this shared machine a
# PostgreSQL full of other runs' clients can refuse connections for seconds.
CLIENT_ATTEMPTS = 50


@dataclass
class Replicas:
    addresses: list[str]
    processes: list[subprocess.Popen[bytes]]


@pytest.fixture
async def replicas(auth_server: AuthTestServer) -> AsyncIterator[Replicas]:
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": auth_server.address,
        "LOYALTY_DB_POOL_SIZE": "10",
        # A SIGTERM cancels the calls in flight at once (the server's side of CANCELLED).
        "SHUTDOWN_GRACE": "0",
    }
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    processes = [start("loyalty_service", {**env, "LOYALTY_GRPC_ADDR": a}) for a in addresses]
    try:
        for address, process in zip(addresses, processes, strict=True):
            await asyncio.to_thread(wait_serving, address, process)
        yield Replicas(addresses, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                stop(process)


async def _use(
    http: httpx.AsyncClient, user: TestUser, code: str, request_id: str, tally: Counter[str]
) -> str:
    """Uses the code until answered; returns the purchase id."""
    body = {"code": code, "tariffId": "monthly", "requestId": request_id}
    headers = {"authorization": f"Bearer {user.access_token}"}
    for _ in range(CLIENT_ATTEMPTS):
        answer = await http.post("/v1/promocodes/use", json=body, headers=headers)
        tally[str(answer.status_code)] += 1
        if answer.status_code == 200:
            purchase_id: str = answer.json()["purchaseId"]
            return purchase_id
        assert answer.status_code in (503, 504), answer.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"use {request_id} unanswered after {CLIENT_ATTEMPTS} attempts")


@pytest.mark.parametrize("death", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_killing_a_replica_mid_burst_loses_no_use_and_keeps_counters_exact(
    auth_server: AuthTestServer,
    admin: TestUser,
    replicas: Replicas,
    death: signal.Signals,
) -> None:
    settings = gateway_settings(auth_server.address, "ipv4:" + ",".join(replicas.addresses))
    http, gateway = await open_client(settings)
    code = f"FAIL{uuid.uuid4().hex[:8].upper()}"
    created = await http.post(
        "/v1/admin/promocodes",
        json={"code": code, "percentOff": 10, "allUsers": True, "perUserLimit": 0},
        headers={"authorization": f"Bearer {admin.access_token}"},
    )
    assert created.status_code == 200, created.text
    users = [auth_server.token_for() for _ in range(USERS)]
    tally: Counter[str] = Counter()
    answered = 0
    killed = asyncio.Event()
    limit = asyncio.Semaphore(40)

    async def one(i: int) -> str:
        nonlocal answered
        async with limit:
            purchase = await _use(http, users[i % USERS], code, f"order-{i}", tally)
        answered += 1
        if answered == KILL_AFTER:
            replicas.processes[1].send_signal(death)
            killed.set()
        return purchase

    try:
        purchases = await asyncio.gather(*(one(i) for i in range(USES)))
    finally:
        await http.aclose()
        await gateway.backends.close()
    assert killed.is_set() and replicas.processes[1].wait(10) in (-signal.SIGKILL, 0)
    print("client-side answers:", dict(tally))  # the 503s the client retried, if any
    assert len(set(purchases)) == USES, tally
    # Never 499: a call the dying replica cut off is the server's doing, not the client's.
    assert "499" not in tally and set(tally) <= {"200", "503", "504"}, tally
    connection = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
    try:
        row = await connection.fetchrow(
            "SELECT promo_code_uses(c.code) AS uses,"
            " (SELECT count(*) FROM purchases p WHERE p.code = c.code"
            "   AND p.status IN ('PENDING', 'COMPLETED')) AS held,"
            " (SELECT coalesce(sum(uses), 0) FROM user_code_uses x WHERE x.code = c.code)"
            "   AS per_user"
            " FROM promo_codes c WHERE c.code = $1",
            code,
        )
    finally:
        await connection.close()
    assert (row["uses"], row["held"], row["per_user"]) == (USES, USES, USES), tally
