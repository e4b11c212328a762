"""Loyalty behind the edge (HAProxy, common.processes.edge) as `make run` starts it: two
workers on unix sockets, the edge on the service's address. Reflection and grpcurl pass
through it; past its cap it refuses at once with the services' overload status and a retry
delay, and the call does nothing; a one-time code is used once when hundreds race through it;
and a caller is judged by the address it really connects from, whatever x-forwarded-for it
sends, while two callers from two addresses keep their own guessing budgets. A call that
waited its time in the edge's queue has the same refusal; a call no worker is up for at all
is UNAVAILABLE, never an overload."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from bench.ports import free_port
from bench.spike import create_code
from common.processes import edge as edge_settings
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc
from tests.e2e.processes import ROOT, grpcurl, run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email
from tests.grpc_helpers import error_info
from tests.tcp_proxy import TcpProxy

PER_ADDRESS = 3
NOISY, QUIET = "127.0.27.2", "127.0.27.3"
Meta = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Edged:
    auth: str
    edge: str  # the service's address: the edge in front of both workers
    direct: str  # loyalty's own port
    refusing: str  # an edge over the same workers that admits nothing
    stranded: str  # an edge whose own workers are gone, with the workers above as its backups
    impatient: str  # one call at each worker; the others may wait 1 ms in its queue
    deserted: str  # an edge with no worker and no backup
    admin: Meta
    user: Meta


def _edge(
    address: str,
    sockets: str,
    env: dict[str, str],
    in_flight: int,
    backups: tuple[str, ...] = (),
    **settings: str,
) -> dict[str, str]:
    """An edge's environment as `make run` builds it (edge.environments), with this test's
    cap on calls in flight and any other settings."""
    _, edge = edge_settings.environments(env, address, env["LOYALTY_GRPC_ADDR"], sockets, backups)
    return {**edge, "EDGE_IN_FLIGHT": str(in_flight), **settings}


async def _signed_in(auth: str, email: str) -> Meta:
    async with grpc.aio.insecure_channel(auth) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        login = await stub.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
    return (("authorization", f"Bearer {login.access_token}"),)


@pytest.fixture(scope="module")
def edged() -> Iterator[Edged]:
    auth = f"127.0.0.1:{free_port()}"
    edge, refusing, stranded, impatient, deserted = (f"127.0.0.1:{free_port()}" for _ in range(5))
    prefix = os.environ.get("REDIS_KEY_PREFIX", "loyalty:")
    with tempfile.TemporaryDirectory(prefix="edge-test-") as folder:
        sockets = os.path.join(folder, "loyalty-")
        direct = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "AUTH_GRPC_ADDR": auth,
            "LOYALTY_GRPC_ADDR": direct,
            "LOYALTY_WORKERS": "2",
            "LOYALTY_EDGE_SOCKETS": sockets,
            "LOYALTY_PROMO_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
            "LOYALTY_PROMO_FAILURES_PER_USER": "1000",
            # Guessing buckets of this module's own.
            "REDIS_KEY_PREFIX": f"{prefix}edge{uuid.uuid4().hex[:6]}:",
            "PYTHONPATH": str(ROOT),
        }
        for service in ("auth_service", "loyalty_service"):
            run([sys.executable, "-m", service, "migrate"], env)
        admin_email, user_email = unique_email("edge-admin"), unique_email("edge-user")
        processes = [start("auth_service", env), start("loyalty_service", env)]
        processes += [
            start("common.processes.edge", _edge(edge, sockets, env, in_flight=8)),
            start("common.processes.edge", _edge(refusing, sockets, env, in_flight=0)),
            start(
                "common.processes.edge",
                _edge(stranded, os.path.join(folder, "gone-"), env, 8, backups=(sockets,)),
            ),
            start(
                "common.processes.edge",
                _edge(impatient, sockets, env, 1, EDGE_QUEUED="1000", EDGE_QUEUE_TIMEOUT_MS="1"),
            ),
            start("common.processes.edge", _edge(deserted, os.path.join(folder, "none-"), env, 8)),
        ]
        try:
            wait_serving(auth, processes[0])
            wait_serving(direct, processes[1])  # loyalty's own failure, with its stderr
            wait_serving(edge, processes[2])
            wait_serving(refusing, processes[3])
            wait_serving(stranded, processes[4])
            wait_serving(impatient, processes[5])
            run(
                [sys.executable, "-m", "auth_service", "create-admin", "--email", admin_email],
                {**env, "AUTH_ADMIN_PASSWORD": PASSWORD},
            )
            grpcurl(
                auth,
                "loyalty.auth.v1.AuthService/Register",
                data=f'{{"email": "{user_email}", "password": "{PASSWORD}"}}',
            )
            admin = asyncio.run(_signed_in(auth, admin_email))
            user = asyncio.run(_signed_in(auth, user_email))
            yield Edged(auth, edge, direct, refusing, stranded, impatient, deserted, admin, user)
        finally:
            assert [stop(p) for p in processes] == [0] * len(processes)


@pytest.fixture
async def admin_stub(edged: Edged) -> AsyncIterator[promo_pb2_grpc.PromoAdminServiceStub]:
    async with grpc.aio.insecure_channel(edged.edge) as channel:
        yield promo_pb2_grpc.PromoAdminServiceStub(channel)


def test_grpcurl_lists_and_describes_the_services_through_the_edge(edged: Edged) -> None:
    listed = grpcurl(edged.edge, "list").split()
    assert "loyalty.promo.v1.PromoService" in listed
    assert "rpc UsePromoCode" in grpcurl(edged.edge, "describe", "loyalty.promo.v1.PromoService")
    # Past the cap too: a probe and a person see a busy server as it is.
    assert "loyalty.promo.v1.PromoService" in grpcurl(edged.refusing, "list").split()


async def test_past_the_cap_a_call_is_refused_at_once_with_a_retry_delay_and_does_nothing(
    edged: Edged, admin_stub: promo_pb2_grpc.PromoAdminServiceStub
) -> None:
    code = await create_code(admin_stub, edged.admin, max_uses=1, per_user=1)
    use = promo_pb2.UsePromoCodeRequest(code=code, tariff_id="monthly", request_id="edge-1")
    async with grpc.aio.insecure_channel(edged.refusing) as channel:
        refused = promo_pb2_grpc.PromoServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await refused.UsePromoCode(use, metadata=edged.user, timeout=10)
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(raised.value)
    assert (info.reason, info.domain, info.metadata["refused_by"]) == (
        "OVERLOADED",
        "promo.loyalty",
        "edge",
    )
    assert _retry_delay_ms(raised.value) == 100
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # The refused call took nothing: the one use is still there for the same request.
    report = await admin_stub.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=edged.admin
    )
    assert report.uses_taken == 0
    async with grpc.aio.insecure_channel(edged.edge) as channel:
        served = promo_pb2_grpc.PromoServiceStub(channel)
        purchase = await served.UsePromoCode(use, metadata=edged.user, timeout=10)
    assert purchase.status == promo_pb2.PURCHASE_STATUS_PENDING


def _retry_delay_ms(error: grpc.aio.AioRpcError) -> int | None:
    status = rpc_status.from_call(error)
    retry = error_details_pb2.RetryInfo()
    for detail in status.details if status else ():
        if detail.Unpack(retry):
            return int(retry.retry_delay.ToMilliseconds())
    return None


async def _race(address: str, user: Meta, code: str, calls: int) -> Counter[str]:
    """`calls` uses of `code` at once through `address`, each with a request id of its own:
    how many were answered each way ("taken", or the status, the reason, who refused it for
    load and the retry delay it gave)."""
    tag = uuid.uuid4().hex[:6]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = promo_pb2_grpc.PromoServiceStub(channel)

        async def use(i: int) -> str:
            request = promo_pb2.UsePromoCodeRequest(
                code=code, tariff_id="monthly", request_id=f"race-{tag}-{i}"
            )
            try:
                await stub.UsePromoCode(request, metadata=user, timeout=30)
            except grpc.aio.AioRpcError as error:
                info, delay = error_info(error), _retry_delay_ms(error)
                refuser = info.metadata.get("refused_by")
                return " ".join(
                    [
                        error.code().name,
                        info.reason,
                        *([f"by {refuser}"] if refuser else []),
                        *([f"retry {delay} ms"] if delay is not None else []),
                    ]
                )
            return "taken"

        return Counter(await asyncio.gather(*(use(i) for i in range(calls))))


EXHAUSTED = "FAILED_PRECONDITION PROMO_CODE_EXHAUSTED"
EDGE_REFUSAL = "RESOURCE_EXHAUSTED OVERLOADED by edge retry 100 ms"


async def test_a_code_is_used_exactly_its_uses_when_hundreds_race_through_the_edge(
    edged: Edged, admin_stub: promo_pb2_grpc.PromoAdminServiceStub
) -> None:
    code = await create_code(admin_stub, edged.admin, max_uses=5, per_user=0)
    outcomes = await _race(edged.edge, edged.user, code, 300)
    assert outcomes["taken"] == 5
    # Whatever else was answered is a limit or a refusal for load with a retry delay (the
    # edge's, or loyalty's own behind it), each a clear status.
    others = set(outcomes) - {"taken", EXHAUSTED}
    assert all(o.startswith("RESOURCE_EXHAUSTED OVERLOADED") and "retry" in o for o in others)
    report = await admin_stub.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=edged.admin
    )
    assert report.uses_taken == 5
    assert report.uses_left == 0


async def test_a_call_that_waited_its_time_in_the_queue_is_refused_with_a_retry_delay(
    edged: Edged, admin_stub: promo_pb2_grpc.PromoAdminServiceStub
) -> None:
    # Two calls at the workers, a queue of 1,000 that is never full, and 1 ms to wait in it:
    # every refusal here is a call whose wait ran out, and it must read as the cap's refusal
    # (HAProxy's own answer would be a 503, UNAVAILABLE, and no retry delay).
    code = await create_code(admin_stub, edged.admin, max_uses=100, per_user=0)
    outcomes = await _race(edged.impatient, edged.user, code, 100)
    assert set(outcomes) <= {"taken", EDGE_REFUSAL}, outcomes
    assert outcomes[EDGE_REFUSAL] > 0, outcomes
    # A refused call took nothing.
    report = await admin_stub.GetPromoCodeReport(
        promo_pb2.GetPromoCodeReportRequest(code=code), metadata=edged.admin
    )
    assert report.uses_taken == outcomes["taken"]


async def test_with_no_worker_up_a_call_is_unavailable_not_overloaded(edged: Edged) -> None:
    use = promo_pb2.UsePromoCodeRequest(code="ANY", tariff_id="monthly", request_id="deserted")
    seen: list[str] = []
    async with grpc.aio.insecure_channel(edged.deserted) as channel:
        stub = promo_pb2_grpc.PromoServiceStub(channel)
        # Until the edge has found its workers missing (its first connection to them fails).
        for _ in range(100):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.UsePromoCode(use, metadata=edged.user, timeout=10)
            seen.append(raised.value.code().name)
            if raised.value.details() == edge_settings.NO_WORKER:
                break
            await asyncio.sleep(0.1)
    assert raised.value.details() == edge_settings.NO_WORKER
    assert set(seen) == {"UNAVAILABLE"}
    assert _retry_delay_ms(raised.value) is None


async def test_an_edge_whose_workers_are_all_dead_serves_from_another_replicas(
    edged: Edged, admin_stub: promo_pb2_grpc.PromoAdminServiceStub
) -> None:
    # As under `make run REPLICAS=2` when loyalty#1 dies: edge#1 stays up, and the gateway's
    # balancer keeps sending it calls, which must not fail.
    code = await create_code(admin_stub, edged.admin, max_uses=10, per_user=10)
    async with grpc.aio.insecure_channel(edged.stranded) as channel:
        stub = promo_pb2_grpc.PromoServiceStub(channel)
        for n in range(10):
            use = promo_pb2.UsePromoCodeRequest(
                code=code, tariff_id="monthly", request_id=f"stranded-{n}"
            )
            purchase = await stub.UsePromoCode(use, metadata=edged.user, timeout=10)
            assert purchase.status == promo_pb2.PURCHASE_STATUS_PENDING


async def _import(address: str, admin: Meta, csv: str) -> str:
    """An import's answer: its row results, or its status and reason."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = promo_pb2_grpc.PromoAdminServiceStub(channel)
        request = promo_pb2.ImportPromoCodesRequest(csv=csv)
        try:
            answer = await stub.ImportPromoCodes(request, metadata=admin, timeout=60)
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} {error.details()}"
    return str(answer)


async def test_a_request_of_megabytes_passes_the_edge_as_it_reaches_loyalty(edged: Edged) -> None:
    # A 3 MB CSV (the gateway takes up to 4 MB): one row whose code is far too long. Through
    # the edge it gets the answer loyalty gives it directly, whatever that is.
    csv = "code,percent_off\n" + "X" * 3_000_000 + ",10\n"
    through = await _import(edged.edge, edged.admin, csv)
    assert through == await _import(edged.direct, edged.admin, csv)
    assert "UNAVAILABLE" not in through and "INTERNAL" not in through


async def _guess(address: str, user: Meta, forwarded: str | None = None) -> str:
    """Applies a code that does not exist; the reason it is refused for."""
    metadata = (*user, ("x-forwarded-for", forwarded)) if forwarded else user
    code = f"NOPE{uuid.uuid4().hex[:8]}"
    request = promo_pb2.ApplyPromoCodeRequest(code=code, tariff_id="monthly")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = promo_pb2_grpc.PromoServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ApplyPromoCode(request, metadata=metadata, timeout=10)
    reason: str = error_info(raised.value).reason
    return reason


async def test_each_caller_is_judged_by_the_address_it_connects_from(edged: Edged) -> None:
    host, _, port = edged.edge.rpartition(":")
    # Addresses no other test calls from: the guessing buckets are kept in the run's loyalty
    # database, which every test of the run shares.
    noisy, quiet = TcpProxy(host, int(port), NOISY), TcpProxy(host, int(port), QUIET)
    await noisy.open()
    await quiet.open()
    try:
        # A new made-up x-forwarded-for each time: the edge appends the real address after it,
        # and that one is what the budget is kept by.
        reasons = [
            await _guess(f"127.0.0.1:{noisy.port}", edged.user, f"198.51.100.{n}")
            for n in range(PER_ADDRESS + 1)
        ]
        assert reasons == ["PROMO_CODE_NOT_FOUND"] * PER_ADDRESS + ["TOO_MANY_PROMO_ATTEMPTS"]
        # Another address, the same user and the same edge: its own budget, untouched.
        assert await _guess(f"127.0.0.1:{quiet.port}", edged.user) == "PROMO_CODE_NOT_FOUND"
    finally:
        await noisy.cut()
        await quiet.cut()
