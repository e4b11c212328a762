"""Two auth processes relaying one outbox at once deliver every event, and two loyalty
consumers sharing one queue converge to auth's users.

Everything runs in databases, an exchange and a queue of this module's own, so no other
relay or consumer of the run takes part."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest

from common.messaging.broker import declare_exchange
from common.storage.migrations import drop_database
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.events.v1 import events_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import AuthTestServer, TestUser, auth_settings, start_auth, stop_auth
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.fixtures.sync import eventually, mirror, truth

EXCHANGE = f"{TEST_ENV['USER_EVENTS_EXCHANGE']}.replicas"
QUEUE = f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.replicas"
AUTH_DB = f"{TEST_ENV['AUTH_DATABASE_URL']}_replicas"
LOYALTY_DB = f"{TEST_ENV['LOYALTY_DATABASE_URL']}_replicas"


@dataclass
class Cluster:
    auths: list[AuthTestServer]
    loyalties: list[LoyaltyTestServer]
    # Every event the exchange routed, as (user_id, version), seen by a queue of the test's.
    seen: list[tuple[str, int]]


async def _watch(queue: aio_pika.abc.AbstractQueue, seen: list[tuple[str, int]]) -> None:
    async with queue.iterator() as messages:
        async for message in messages:
            event = events_pb2.UserEvent.FromString(message.body)
            seen.append((event.user_id, event.version))
            await message.ack()


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    broker = {"user_events_exchange": EXCHANGE, "broker_unhealthy_after_seconds": 5.0}
    # Small pools: PostgreSQL here allows 100 clients, shared by every test run.
    small = {"auth_db_pool_size": 4}
    auths = [
        await start_auth(auth_settings(auth_database_url=AUTH_DB, **broker, **small), keeper=False)
        for _ in "ab"
    ]
    tasks = [asyncio.create_task(loop()) for auth in auths for loop in auth.app.loops]
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    channel = await connection.channel()
    exchange = await declare_exchange(channel, EXCHANGE)
    watcher = await channel.declare_queue(f"{QUEUE}.watcher", auto_delete=True)
    await watcher.bind(exchange, "#")
    seen: list[tuple[str, int]] = []
    tasks.append(asyncio.create_task(_watch(watcher, seen)))
    loyalties = [
        await start_loyalty(
            loyalty_settings(
                auths[0].address,
                loyalty_database_url=LOYALTY_DB,
                loyalty_events_queue=QUEUE,
                consumer_retry_delays=[0.2, 0.4],
                loyalty_db_pool_size=4,
                **broker,
            ),
            loops=True,
        )
        for _ in "ab"
    ]
    yield Cluster(auths, loyalties, seen)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for loyalty in loyalties:
        await stop_loyalty(loyalty)
    for auth in auths:
        await stop_auth(auth)
    with contextlib.suppress(Exception):
        await exchange.delete()
    await connection.close()
    await drop_database(AUTH_DB)
    await drop_database(LOYALTY_DB)


async def _changes(cluster: Cluster, admin: TestUser, users: list[TestUser], rounds: int) -> None:
    """Blocks and unblocks every user `rounds` times, the calls alternating between the auths."""
    statuses = [auth_pb2.USER_STATUS_BLOCKED, auth_pb2.USER_STATUS_ACTIVE]
    for round_ in range(rounds):
        await asyncio.gather(
            *(
                cluster.auths[(round_ + i) % 2].admin.SetUserStatus(
                    auth_pb2.SetUserStatusRequest(user_id=u.user_id, status=statuses[round_ % 2]),
                    metadata=admin.metadata(),
                )
                for i, u in enumerate(users)
            )
        )


async def test_two_relays_deliver_every_event_and_two_consumers_converge(cluster: Cluster) -> None:
    admin = await cluster.auths[0].new_admin()
    users = [await cluster.auths[i % 2].new_user() for i in range(20)]
    await _changes(cluster, admin, users, rounds=10)
    expected = {(u.user_id, v) for u in users for v in range(1, 12)}  # registered, 10 changes

    async def delivered() -> bool:
        return expected <= set(cluster.seen)

    await eventually(delivered, 60, "every event through the exchange")
    final = await truth(cluster.auths[0], [u.user_id for u in users])
    assert {v for _, v in final.values()} == {11}

    async def converged() -> bool:
        return await mirror(cluster.loyalties[0], list(final)) == final

    await eventually(converged, 60, "both consumers together applied every user's last status")
    unsent = await cluster.auths[0].app.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
    )
    assert unsent == 0
