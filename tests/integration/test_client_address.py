"""The client's address travels with identity (common/access/client_address.py), over gRPC
and HTTP: a direct caller cannot move its own address (x-forwarded-for, an unsigned or badly
signed x-client-address); HTTP clients behind the gateway are judged each by its own address,
which the gateway signs; a service with scope client-address:forward vouches for its user's.

The guessing throttle is set to 3 failures per address (and plenty per user), so whose bucket
a failure lands in shows whose address the server believed."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from common.access.client_address import signature
from gateway.app import create_app
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import (
    PASSWORD,
    AuthTestServer,
    TestUser,
    auth_settings,
    start_auth,
    stop_auth,
    unique_email,
)
from tests.fixtures.gateway import gateway_settings
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.grpc_helpers import reason_of, rejected

KEY = "a key the gateway and the servers share"
PER_ADDRESS = 3
NOT_FOUND, THROTTLED = "PROMO_CODE_NOT_FOUND", "TOO_MANY_PROMO_ATTEMPTS"


@dataclass
class Signed:
    auth: AuthTestServer
    loyalty: LoyaltyTestServer


@pytest.fixture(scope="module")
async def signed() -> AsyncIterator[Signed]:
    """Auth and loyalty that check the gateway's signature, trust no peer, and keep their
    throttle buckets to themselves."""
    prefix = f"{os.environ.get('REDIS_KEY_PREFIX', 'loyalty:')}addr{uuid.uuid4().hex[:8]}:"
    auth = await start_auth(
        auth_settings(
            client_address_key=KEY,
            auth_login_limit_per_address=PER_ADDRESS,
            redis_key_prefix=prefix,
        )
    )
    loyalty = await start_loyalty(
        loyalty_settings(
            auth.address,
            client_address_key=KEY,
            loyalty_promo_failures_per_address=PER_ADDRESS,
            loyalty_promo_failures_per_user=1000,
            redis_key_prefix=prefix,
            loyalty_db_pool_size=5,
        )
    )
    # The guessing buckets are PostgreSQL's, shared with other tests' servers: start empty.
    await loyalty.app.pool.execute("DELETE FROM guess_buckets")
    yield Signed(auth, loyalty)
    await stop_loyalty(loyalty)
    await stop_auth(auth)


def _guess(loyalty: LoyaltyTestServer, user: TestUser, *extra: tuple[str, str]) -> Awaitable[Any]:
    ask = promo_pb2.ApplyPromoCodeRequest(code=f"NOPE{uuid.uuid4().hex[:8]}", tariff_id="monthly")
    call: Awaitable[Any] = loyalty.promo.ApplyPromoCode(ask, metadata=(*user.metadata(), *extra))
    return call


def _code_of(n: int, total: int) -> grpc.StatusCode:
    return grpc.StatusCode.NOT_FOUND if n < PER_ADDRESS else grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_direct_caller_cannot_move_its_own_address(signed: Signed) -> None:
    """Each guess claims a fresh address (x-forwarded-for, unsigned, badly signed): had any
    been believed, no bucket would fill. All land in the caller's own, 127.0.0.1's."""
    claims: list[list[tuple[str, str]]] = [
        [("x-forwarded-for", "198.51.100.1")],
        [("x-client-address", "198.51.100.2")],
        [
            ("x-request-id", "r-3"),
            ("x-client-address", "198.51.100.3"),
            ("x-client-address-signature", signature(b"a guessed key", "198.51.100.3", "r-3")),
        ],
        [("x-forwarded-for", "198.51.100.4"), ("x-client-address", "198.51.100.4")],
    ]
    users = [signed.auth.token_for() for _ in claims]
    reasons = [
        await reason_of(_guess(signed.loyalty, user, *claim), _code_of(n, len(claims)))
        for n, (user, claim) in enumerate(zip(users, claims, strict=True))
    ]
    assert reasons == [NOT_FOUND] * PER_ADDRESS + [THROTTLED]


async def test_a_service_with_the_scope_vouches_for_its_users_address(signed: Signed) -> None:
    """Billing calls with the user's token and its own in x-client-address-authorization:
    each user's guesses land in that user's address's bucket, not billing's."""
    billing = signed.auth.service_token("client-address:forward")
    voucher = ("x-client-address-authorization", f"Bearer {billing.access_token}")
    user = signed.auth.token_for()
    for n in range(2 * PER_ADDRESS):
        claim = ("x-client-address", f"203.0.113.{n + 1}")
        assert (
            await reason_of(_guess(signed.loyalty, user, voucher, claim), grpc.StatusCode.NOT_FOUND)
            == NOT_FOUND
        )
    # Through a service without the scope the claim is not believed: the guess lands in the
    # peer's (127.0.0.1's) bucket, which the test before this one emptied.
    unscoped = signed.auth.service_token("purchases:settle")
    other = ("x-client-address-authorization", f"Bearer {unscoped.access_token}")
    claim = ("x-client-address", "203.0.113.100")
    call = _guess(signed.loyalty, user, other, claim)
    assert await reason_of(call, grpc.StatusCode.RESOURCE_EXHAUSTED) == THROTTLED
    # A voucher token that does not verify fails the call: the backend learns it is wrong.
    bad = ("x-client-address-authorization", "Bearer not-a-token")
    await rejected(_guess(signed.loyalty, user, bad, claim), grpc.StatusCode.UNAUTHENTICATED)


ClientFrom = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def gateway_for(signed: Signed) -> AsyncIterator[ClientFrom]:
    """HTTP clients of an in-process gateway that signs with the servers' key, each seen
    by the gateway as connecting from the address it is made for."""
    app = create_app(
        gateway_settings(signed.auth.address, signed.loyalty.address, client_address_key=KEY)
    )
    gateway = app.gateway
    await gateway.open()
    clients: list[httpx.AsyncClient] = []

    def client(address: str) -> httpx.AsyncClient:
        """An HTTP client whose connection comes from `address`."""
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        made = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        clients.append(made)
        return made

    yield client
    for made in clients:
        await made.aclose()
    await gateway.backends.close()


def _bearer(user: TestUser) -> dict[str, str]:
    return {"authorization": f"Bearer {user.access_token}"}


async def _http_guess(client: httpx.AsyncClient, user: TestUser, **headers: str) -> str:
    answer = await client.post(
        "/v1/promocodes/apply",
        json={"code": f"NOPE{uuid.uuid4().hex[:8]}", "tariffId": "monthly"},
        headers={**_bearer(user), **headers},
    )
    reason: str = answer.json()["details"][0]["reason"]
    return reason


async def test_http_clients_are_judged_each_by_its_own_address(
    signed: Signed, gateway_for: ClientFrom
) -> None:
    """Two HTTP clients from 127.0.0.2 and 127.0.0.3: one's wrong codes fill its own bucket
    only, and X-Forwarded-For from either (the gateway trusts no proxy) changes nothing."""
    noisy, quiet = gateway_for("127.0.0.2"), gateway_for("127.0.0.3")
    user = signed.auth.token_for()
    noisy_reasons = [
        await _http_guess(noisy, user, **{"x-forwarded-for": f"198.51.100.{n}"})
        for n in range(PER_ADDRESS + 1)
    ]
    assert noisy_reasons == [NOT_FOUND] * PER_ADDRESS + [THROTTLED]
    assert await _http_guess(quiet, signed.auth.token_for()) == NOT_FOUND


async def test_http_logins_are_judged_each_by_its_own_address(
    signed: Signed, gateway_for: ClientFrom
) -> None:
    """Auth too: failed logins from one address throttle that address, not another's."""
    noisy, quiet = gateway_for("127.0.0.4"), gateway_for("127.0.0.5")
    email = unique_email("addr")
    await signed.auth.auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD))
    statuses = []
    for _ in range(PER_ADDRESS + 1):
        wrong = {"email": unique_email("nobody"), "password": "wrong password"}
        statuses.append((await noisy.post("/v1/auth/login", json=wrong)).status_code)
    assert statuses == [401] * PER_ADDRESS + [429]
    right = await quiet.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == 200, right.text
