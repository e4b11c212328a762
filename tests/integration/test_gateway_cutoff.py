"""A backend call the backend cuts off (a replica stopping or dying answers CANCELLED, as a
server-side RST_STREAM CANCEL reads to the client) is not the client's cancellation: the gateway
retries it on the other replica when that is safe (a use with a request id) and answers 503
otherwise, never 499 ("Client Closed Request"). One replica here cuts off every use; the other
is a real loyalty server on the same database."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest

from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.gateway import gateway_settings, open_client
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty

USE = "/loyalty.promo.v1.PromoService/UsePromoCode"


class CutsOffUses(grpc.aio.ServerInterceptor):
    """Ends every use with CANCELLED before it runs, as a replica going away does."""

    def __init__(self) -> None:
        self.cut = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if details.method != USE:
            return handler

        async def cut_off(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.cut += 1
            await context.abort(grpc.StatusCode.CANCELLED, "the server is shutting down")

        return grpc.unary_unary_rpc_method_handler(
            cut_off,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.fixture(scope="module")
async def pair(auth_server: AuthTestServer) -> AsyncIterator[tuple[list[LoyaltyTestServer], Any]]:
    cutter = CutsOffUses()
    settings = [loyalty_settings(auth_server.address, loyalty_db_pool_size=6) for _ in range(2)]
    dying = await start_loyalty(settings[0], interceptors=[cutter])
    live = await start_loyalty(settings[1])
    yield [dying, live], cutter
    for server in (dying, live):
        await stop_loyalty(server)


@pytest.fixture
async def http(
    auth_server: AuthTestServer, pair: tuple[list[LoyaltyTestServer], Any]
) -> AsyncIterator[httpx.AsyncClient]:
    target = "ipv4:" + ",".join(server.address for server in pair[0])
    client, gateway = await open_client(gateway_settings(auth_server.address, target))
    yield client
    await client.aclose()
    await gateway.backends.close()


async def _code(http: httpx.AsyncClient, admin: TestUser) -> str:
    code = f"CUT{uuid.uuid4().hex[:8].upper()}"
    created = await http.post(
        "/v1/admin/promocodes",
        json={"code": code, "percentOff": 10, "allUsers": True, "perUserLimit": 0},
        headers={"authorization": f"Bearer {admin.access_token}"},
    )
    assert created.status_code == 200, created.text
    return code


async def _uses(
    http: httpx.AsyncClient, user: TestUser, code: str, request_ids: list[str]
) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {user.access_token}"}
    return await asyncio.gather(
        *(
            http.post(
                "/v1/promocodes/use",
                json={"code": code, "tariffId": "monthly", "requestId": request_id},
                headers=headers,
            )
            for request_id in request_ids
        )
    )


async def test_uses_with_a_request_id_are_retried_on_the_other_replica(
    http: httpx.AsyncClient,
    pair: tuple[list[LoyaltyTestServer], CutsOffUses],
    auth_server: AuthTestServer,
    admin: TestUser,
) -> None:
    code, user, cutter = await _code(http, admin), auth_server.token_for(), pair[1]
    before, sent, statuses = cutter.cut, 0, Counter[int]()
    # Batches until some reached the cutting replica (the balancer may still be connecting to
    # it at first), every one answered 200.
    while cutter.cut == before:
        assert sent < 400, "no use reached the replica that cuts calls off"
        answers = await _uses(http, user, code, [f"order-{sent + i}" for i in range(40)])
        statuses.update(a.status_code for a in answers)
        sent += 40
    assert statuses == {200: sent}
    uses = await pair[0][1].app.pool.fetchval("SELECT promo_code_uses($1)", code)
    assert uses == sent


async def test_uses_without_one_are_503_never_499(
    http: httpx.AsyncClient,
    pair: tuple[list[LoyaltyTestServer], CutsOffUses],
    auth_server: AuthTestServer,
    admin: TestUser,
) -> None:
    code, user = await _code(http, admin), auth_server.token_for()
    answers: list[httpx.Response] = []
    while not any(a.status_code == 503 for a in answers):
        assert len(answers) < 400, "no use reached the replica that cuts calls off"
        answers += await _uses(http, user, code, [""] * 40)
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 503}, statuses
    cut = next(a for a in answers if a.status_code == 503)
    assert cut.json()["code"] == 14 and "retry" in cut.json()["message"]  # UNAVAILABLE
    assert cut.headers["retry-after"] == "1"  # a core refusing at intake answers CANCELLED too
    uses = await pair[0][1].app.pool.fetchval("SELECT promo_code_uses($1)", code)
    assert uses == statuses[200]
