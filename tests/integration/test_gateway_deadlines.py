"""The client's deadline through the gateway: `X-Request-Timeout` (milliseconds) becomes the
deadline of the backend call, which the backend sees as its time left; more than the gateway's
own deadline is capped, a malformed value is a 400 naming the header, and a backend past the
deadline is a 504 Status. And a backend's refusal with a retry delay (RESOURCE_EXHAUSTED with
RetryInfo, what an overloaded server answers) is a 429 with Retry-After. A real loyalty server
behind the gateway; a probe interceptor in it reads what each ListTariffs call arrives with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.gateway import gateway_settings, open_client
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty

LIST_TARIFFS = "/loyalty.promo.v1.PromoService/ListTariffs"
GATEWAY_DEADLINE_S = 30.0


@dataclass
class Probe(grpc.aio.ServerInterceptor):
    """Records the time left and the metadata of every ListTariffs call, then runs it; or,
    as a test asks, outlives its deadline or refuses it as an overloaded server does."""

    time_left: list[float] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    hang: bool = False
    refuse: bool = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if details.method != LIST_TARIFFS:
            return handler
        run = handler.unary_unary

        async def probed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            remaining = context.time_remaining()
            self.time_left.append(float("inf") if remaining is None else remaining)
            self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})
            if self.refuse:
                await context.abort_with_status(rpc_status.to_status(overloaded()))
            if self.hang:
                await asyncio.sleep(remaining or 60)
            return await run(request, context)

        return grpc.unary_unary_rpc_method_handler(
            probed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def overloaded() -> status_pb2.Status:
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=200_000_000))
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message="over the concurrency limit", details=[packed]
    )


@pytest.fixture(scope="module")
async def probed(auth_server: AuthTestServer) -> AsyncIterator[tuple[LoyaltyTestServer, Probe]]:
    probe = Probe()
    server = await start_loyalty(loyalty_settings(auth_server.address), interceptors=[probe])
    yield server, probe
    await stop_loyalty(server)


@pytest.fixture
async def http(
    auth_server: AuthTestServer, probed: tuple[LoyaltyTestServer, Probe]
) -> AsyncIterator[httpx.AsyncClient]:
    server, probe = probed
    probe.hang = probe.refuse = False
    settings = gateway_settings(
        auth_server.address,
        server.address,
        gateway_backend_timeout_seconds=GATEWAY_DEADLINE_S,
    )
    client, gateway = await open_client(settings)
    yield client
    await client.aclose()
    await gateway.backends.close()


@pytest.fixture(scope="module")
def user(auth_server: AuthTestServer) -> TestUser:
    return auth_server.token_for()


def headers(user: TestUser, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}", **extra}


# gRPC's core may round a timeout up when it encodes grpc-timeout (timeout_encoding.h: "encoding
# may round up arbitrarily"; it keeps few significant digits), so a deadline can arrive a little
# longer than it left: 30.1 s was seen for 30 s, 1.5085 s for 1.5 s. The bounds allow 5%; a
# deadline that ignored the client's header would still be the gateway's 30 s.
WIRE_ROUNDING = 1.05


async def time_left(http: httpx.AsyncClient, probe: Probe, given: dict[str, str]) -> float:
    calls = len(probe.time_left)
    answer = await http.get("/v1/tariffs", headers=given)
    assert answer.status_code == 200, answer.text
    assert len(probe.time_left) == calls + 1
    return probe.time_left[-1]


@pytest.mark.parametrize("asked", ["1500", "0000000000000000000001500"])
async def test_the_client_s_timeout_is_the_backend_call_s_deadline(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser, asked: str
) -> None:
    probe = probed[1]
    left = await time_left(http, probe, headers(user, **{"X-Request-Timeout": asked}))
    assert 0 < left <= 1.5 * WIRE_ROUNDING


async def test_without_the_header_the_gateway_s_own_deadline_applies(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser
) -> None:
    left = await time_left(http, probed[1], headers(user))
    assert 1.5 * WIRE_ROUNDING < left <= GATEWAY_DEADLINE_S * WIRE_ROUNDING


@pytest.mark.parametrize("asked", ["600000", "99999999999999999999999"])
async def test_a_timeout_past_the_gateway_s_own_is_cut_to_it(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser, asked: str
) -> None:
    left = await time_left(http, probed[1], headers(user, **{"X-Request-Timeout": asked}))
    assert 1.5 * WIRE_ROUNDING < left <= GATEWAY_DEADLINE_S * WIRE_ROUNDING


@pytest.mark.parametrize(
    "value", ["0", "000", "-5", "+5", "1.5", "1e3", "0x10", "abc", "", "5ms", "\u00b2", "1_000"]
)
async def test_a_malformed_timeout_is_a_400_naming_the_header(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser, value: str
) -> None:
    probe = probed[1]
    calls = len(probe.time_left)
    # Sent as latin-1 bytes: "\u00b2" (a superscript two) is a digit to str.isdigit.
    given = [(k.encode(), v.encode("latin-1")) for k, v in headers(user).items()]
    given.append((b"X-Request-Timeout", value.encode("latin-1")))
    answer = await http.get("/v1/tariffs", headers=given)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == code_pb2.INVALID_ARGUMENT and "X-Request-Timeout" in body["message"]
    (bad,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert [v["field"] for v in bad["fieldViolations"]] == ["X-Request-Timeout"]
    assert len(probe.time_left) == calls  # refused before any backend call


async def test_a_timeout_given_twice_is_a_400(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser
) -> None:
    given = [("Authorization", f"Bearer {user.access_token}")]
    given += [("X-Request-Timeout", "100"), ("X-Request-Timeout", "5000")]
    answer = await http.get("/v1/tariffs", headers=given)
    assert answer.status_code == 400 and answer.json()["code"] == code_pb2.INVALID_ARGUMENT


async def test_a_backend_past_the_client_s_deadline_is_a_504_status(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser
) -> None:
    probed[1].hang = True
    answer = await http.get("/v1/tariffs", headers=headers(user, **{"X-Request-Timeout": "200"}))
    assert answer.status_code == 504, answer.text
    body = answer.json()
    assert body["code"] == code_pb2.DEADLINE_EXCEEDED and body["message"]
    assert probed[1].time_left[-1] <= 0.2


async def test_a_refusal_with_a_retry_delay_is_a_429_with_retry_after(
    http: httpx.AsyncClient, probed: tuple[LoyaltyTestServer, Probe], user: TestUser
) -> None:
    probed[1].refuse = True
    answer = await http.get("/v1/tariffs", headers=headers(user))
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "1"  # 200 ms, in whole seconds rounded up
    body = answer.json()
    assert body["code"] == code_pb2.RESOURCE_EXHAUSTED
    assert body["message"] == "over the concurrency limit"
    (retry,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry["retryDelay"] == "0.200s"
