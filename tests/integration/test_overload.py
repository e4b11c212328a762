"""Overload is answered, not queued: past a server's admission limit a call is refused at once
with RESOURCE_EXHAUSTED and a retry delay, having done nothing; a call whose caller's deadline
has passed is not worked on, and a statement still running when it passes is cancelled."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.ports import free_port
from common.rpc.admission import AdmissionSettings
from common.rpc.grpc_errors import OVERLOADED
from common.rpc.grpc_server import GrpcServer
from common.telemetry.metrics import rpc_metrics
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import (
    LoyaltyTestServer,
    loyalty_settings,
    start_loyalty,
    stop_loyalty,
)
from tests.integration.test_loyalty_promo import new_code

Code = grpc.StatusCode
HELD = 3


class Gate:
    """A method whose calls wait until the test opens the gate, so that the calls in flight
    are exactly the ones the test sent."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self._arrivals = asyncio.Condition()

    async def wait(self, request: bytes, context: Any) -> bytes:
        async with self._arrivals:
            self.entered += 1
            self._arrivals.notify_all()
        await self.open.wait()
        return b"done"

    async def until_entered(self, count: int) -> None:
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: self.entered >= count)


@pytest.fixture
async def gated() -> AsyncIterator[tuple[grpc.aio.Channel, Gate]]:
    gate = Gate()
    # The Python limit alone: gRPC core's intake limit has tests of its own below.
    limit = AdmissionSettings(
        maximum=HELD, minimum=HELD, initial=HELD, retry_after=0.25, max_pending=0
    )
    server = GrpcServer(
        f"127.0.0.1:{free_port()}", ["test.Gated"], rpc_metrics("gated", None), admission=limit
    )
    handler = grpc.unary_unary_rpc_method_handler(gate.wait)
    server.server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Gated", {"Wait": handler}),)
    )
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    yield channel, gate
    gate.open.set()
    await channel.close()
    await server.stop(0)


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(error)
    assert status is not None, "a refusal carries rich details"
    reasons = []
    delay = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    assert reasons == [OVERLOADED]
    return delay


async def test_calls_past_the_limit_are_refused_with_a_retry_delay(
    gated: tuple[grpc.aio.Channel, Gate],
) -> None:
    channel, gate = gated
    wait = channel.unary_unary("/test.Gated/Wait")
    held = [asyncio.ensure_future(wait(b"")) for _ in range(HELD)]
    await gate.until_entered(HELD)
    extra = await asyncio.gather(*(wait(b"") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(e, grpc.aio.AioRpcError) for e in extra), extra
    assert {e.code() for e in extra} == {Code.RESOURCE_EXHAUSTED}  # type: ignore[union-attr]
    assert {_retry_delay(e) for e in extra} == {0.25}  # type: ignore[arg-type]
    assert gate.entered == HELD, "a refused call never reached its handler"
    gate.open.set()
    assert await asyncio.gather(*held) == [b"done"] * HELD
    # The places are given back: calls are admitted again.
    gate.open.clear()
    again = [asyncio.ensure_future(wait(b"")) for _ in range(HELD)]
    await gate.until_entered(2 * HELD)
    gate.open.set()
    assert await asyncio.gather(*again) == [b"done"] * HELD


async def test_health_is_never_refused_for_load(gated: tuple[grpc.aio.Channel, Gate]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel, gate = gated
    wait = channel.unary_unary("/test.Gated/Wait")
    held = [asyncio.ensure_future(wait(b"")) for _ in range(HELD)]
    await gate.until_entered(HELD)
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    gate.open.set()
    await asyncio.gather(*held)


@pytest.fixture
async def small_loyalty(auth_server: AuthTestServer) -> AsyncIterator[LoyaltyTestServer]:
    """Loyalty admitting three calls at once: a burst of uses overflows it. gRPC core's intake
    limit is left at gRPC's own, so that the refusals seen are the admission limit's."""
    settings = loyalty_settings(auth_server.address, grpc_max_in_flight=HELD, grpc_max_pending=0)
    server = await start_loyalty(settings)
    yield server
    await stop_loyalty(server)


async def test_a_use_refused_for_load_makes_no_purchase(
    small_loyalty: LoyaltyTestServer, auth_server: AuthTestServer, admin: TestUser
) -> None:
    code = new_code()
    await small_loyalty.create_code(admin, code=code, percent_off=10, max_uses=1000)
    users = [auth_server.token_for() for _ in range(200)]
    calls = [
        small_loyalty.promo.UsePromoCode(
            promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly"),
            metadata=user.metadata(),
        )
        for user in users
    ]
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
    taken = [r for r in results if isinstance(r, promo_pb2.Purchase)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(taken) + len(refused) == len(users)
    assert refused, "200 calls at once overflow a limit of 3"
    assert {e.code() for e in refused} == {Code.RESOURCE_EXHAUSTED}
    assert all(_retry_delay(e) == 1.0 for e in refused)
    pool: asyncpg.Pool = small_loyalty.app.pool
    bought = await pool.fetch("SELECT user_id::text FROM purchases WHERE code = $1", code)
    assert sorted(r["user_id"] for r in bought) == sorted(p.user_id for p in taken)
    assert await pool.fetchval("SELECT promo_code_uses($1)", code) == len(taken)


async def test_no_work_after_the_callers_deadline(
    loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer, admin: TestUser
) -> None:
    """A use stuck behind a lock its caller gave up on is cancelled in PostgreSQL when the
    deadline passes, and leaves nothing behind once the lock is gone."""
    code = new_code()
    await loyalty_server.create_code(admin, code=code, percent_off=10, max_uses=10)
    user = auth_server.token_for()
    pool: asyncpg.Pool = loyalty_server.app.pool
    marker = f"deadline-{uuid.uuid4().hex}"
    async with pool.acquire() as blocker, blocker.transaction():
        # A use inserts a purchase: it waits for this lock (reads do not).
        await blocker.execute("LOCK TABLE purchases IN EXCLUSIVE MODE")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await loyalty_server.promo.UsePromoCode(
                promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id=marker),
                metadata=user.metadata(),
                timeout=0.5,
            )
        assert raised.value.code() == Code.DEADLINE_EXCEEDED
        # The statement waiting on the lock is gone, not left to finish for nobody.
        for _ in range(100):
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query LIKE '%loyalty_use%'"
            )
            if waiting == 0:
                break
            await asyncio.sleep(0.05)
        assert waiting == 0
    assert await pool.fetchval("SELECT count(*) FROM purchases WHERE code = $1", code) == 0
    assert await pool.fetchval("SELECT promo_code_uses($1)", code) == 0


async def _flood(limit: AdmissionSettings, calls: int) -> tuple[Counter[grpc.StatusCode], int]:
    """`calls` calls at once to a server whose handler holds its event loop for 5 ms each (a
    saturated worker): what they were answered, and how many the handler ran."""
    ran = 0

    async def busy(request: bytes, context: Any) -> bytes:
        nonlocal ran
        ran += 1
        time.sleep(0.005)  # noqa: ASYNC251 - the point: a loop with no time to take new calls
        return b"done"

    server = GrpcServer(
        f"127.0.0.1:{free_port()}", ["test.Busy"], rpc_metrics("busy", None), admission=limit
    )
    server.server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Busy", {"Work": grpc.unary_unary_rpc_method_handler(busy)}
            ),
        )
    )
    await server.start()
    answers: Counter[grpc.StatusCode] = Counter()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            work = channel.unary_unary("/test.Busy/Work")

            async def one() -> None:
                try:
                    await work(b"", timeout=30)
                    answers[Code.OK] += 1
                except grpc.aio.AioRpcError as error:
                    answers[error.code()] += 1

            await asyncio.gather(*(one() for _ in range(calls)))
    finally:
        await server.stop(0)
    return answers, ran


async def test_past_the_intake_limit_grpc_core_refuses_before_any_python_runs() -> None:
    """grpc.aio takes calls one at a time on the loop that serves them: with the loop busy,
    calls wait in gRPC's core, out of the admission limit's sight. Past GRPC_MAX_PENDING the
    core refuses them (CANCELLED, which the gateway answers 503 with Retry-After): the
    handler never ran for them. Without the limit the same flood all waits its turn."""
    limited = AdmissionSettings(maximum=256, max_pending=2)
    answers, ran = await _flood(limited, 120)
    assert set(answers) == {Code.OK, Code.CANCELLED}, answers
    assert ran == answers[Code.OK]
    unlimited = AdmissionSettings(maximum=256, max_pending=0)
    answers, ran = await _flood(unlimited, 120)
    assert answers == Counter({Code.OK: 120}) and ran == 120


def test_the_intake_limit_is_off_with_admission_control() -> None:
    assert AdmissionSettings(maximum=0, max_pending=8).server_options() == []
    assert dict(AdmissionSettings(maximum=64, max_pending=8).server_options()) == {
        "grpc.server.max_pending_requests": 8,
        "grpc.server.max_pending_requests_hard_limit": 24,
    }
