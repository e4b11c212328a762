"""Service accounts under traffic and across loyalty replicas: rotating a secret mid-traffic
loses no grant and no call; deleting the account gets its token refused by every replica
(each keeps a local copy of the revocations, told by Redis)."""

from __future__ import annotations

import asyncio

import grpc

from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.replicas import Replicated
from tests.integration.test_auth_service_accounts import bearer, create, issue, until

OK, UNAUTHENTICATED = "OK", "UNAUTHENTICATED"


async def _tariffs(stub: promo_pb2_grpc.PromoServiceStub, token: str) -> str:
    """A settler's read (tariffs are open to the payment side) on one replica: its code."""
    try:
        await stub.ListTariffs(promo_pb2.ListTariffsRequest(), metadata=bearer(token))
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return OK


async def test_rotating_a_secret_mid_traffic_loses_no_grant_and_no_call(
    auth_server: AuthTestServer, two_loyalty_replicas: Replicated, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    secrets = [created.client_secret]
    stop = asyncio.Event()
    outcomes: list[str] = []

    async def billing(worker: int) -> None:
        # Each worker keeps using the secret it was configured with, as a fleet mid-deploy does.
        while not stop.is_set():
            secret = secrets[worker % len(secrets)]
            token = (await issue(auth_server, created.client_id, secret)).access_token
            replica = two_loyalty_replicas.replicas[worker % 2]
            outcomes.append(await _tariffs(replica.promo, token))

    workers = [asyncio.create_task(billing(n)) for n in range(6)]
    await until(lambda: _at_least(outcomes, 20), 30)
    rotated = await auth_server.admin.RotateServiceAccountSecret(
        auth_pb2.RotateServiceAccountSecretRequest(id=created.service_account.id),
        metadata=admin.metadata(),
    )
    secrets.append(rotated.client_secret)  # half the fleet moves to the new secret
    before = len(outcomes)
    await until(lambda: _at_least(outcomes, before + 40), 30)
    stop.set()
    await asyncio.gather(*workers)
    assert set(outcomes) == {OK}, outcomes


async def _at_least(outcomes: list[str], count: int) -> bool:
    return len(outcomes) >= count


async def test_a_deleted_account_is_refused_by_every_replica(
    auth_server: AuthTestServer, two_loyalty_replicas: Replicated, admin: TestUser
) -> None:
    created = await create(auth_server, admin)
    token = (await issue(auth_server, created.client_id, created.client_secret)).access_token
    replicas = two_loyalty_replicas.replicas
    assert [await _tariffs(r.promo, token) for r in replicas] == [OK, OK]
    await auth_server.admin.DeleteServiceAccount(
        auth_pb2.DeleteServiceAccountRequest(id=created.service_account.id),
        metadata=admin.metadata(),
    )

    async def refused_everywhere() -> bool:
        codes = [await _tariffs(r.promo, token) for r in replicas]
        return codes == [UNAUTHENTICATED, UNAUTHENTICATED]

    # Polled with a deadline: the local copies hear of the revocation from Redis at once.
    await until(refused_everywhere, 5)
