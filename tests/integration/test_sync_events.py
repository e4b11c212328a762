"""User status changes reach loyalty over the real RabbitMQ, and nothing is lost."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.messaging.broker import CONTENT_TYPE
from loyalty_service.jobs import user_events
from loyalty_service.store.users import apply_user_statuses
from protogen.loyalty.auth.v1 import auth_pb2
from protogen.loyalty.events.v1 import events_pb2
from protogen.loyalty.promo.v1 import promo_pb2
from tests.conftest import TEST_ENV
from tests.fixtures.auth import TestUser
from tests.fixtures.sync import SYNCED_QUEUE, Synced, eventually, mirror, truth
from tests.grpc_helpers import rejected

EXCHANGE = TEST_ENV["USER_EVENTS_EXCHANGE"]
QUEUE = SYNCED_QUEUE


async def _status(synced: Synced, admin: TestUser, user_id: str, status: Any) -> None:
    await synced.auth.admin.SetUserStatus(
        auth_pb2.SetUserStatusRequest(user_id=user_id, status=status), metadata=admin.metadata()
    )


async def _outcome(synced: Synced, admin: TestUser, user_id: str, code: str) -> str:
    """What applying the code on the user's behalf gives: "purchase" or the refusal's reason."""
    result = await synced.loyalty.admin.AdminApplyPromoCode(
        promo_pb2.AdminApplyPromoCodeRequest(code=code, tariff_id="monthly", user_ids=[user_id]),
        metadata=admin.metadata(),
    )
    only = result.results[0]
    return only.reason or str(only.WhichOneof("outcome"))


async def test_blocking_in_auth_is_refused_by_loyalty(synced: Synced) -> None:
    admin = await synced.auth.new_admin()
    user = await synced.auth.new_user()
    code = f"S{uuid.uuid4().hex[:10].upper()}"
    await synced.loyalty.create_code(admin, code=code, percent_off=5, per_user_limit=0)
    await eventually(
        lambda: _mirrored(synced, user.user_id, ("ACTIVE", 1)), 10, "registration mirrored"
    )
    await _status(synced, admin, user.user_id, auth_pb2.USER_STATUS_BLOCKED)

    async def refused() -> bool:
        return await _outcome(synced, admin, user.user_id, code) == "USER_BLOCKED"

    await eventually(refused, 10, "loyalty refuses the blocked user")
    # Blocking also revoked the user's own sessions, in loyalty as everywhere.
    own = synced.loyalty.promo.ListTariffs(promo_pb2.ListTariffsRequest(), metadata=user.metadata())
    await rejected(own, grpc.StatusCode.UNAUTHENTICATED)
    await _status(synced, admin, user.user_id, auth_pb2.USER_STATUS_ACTIVE)

    async def served() -> bool:
        return await _outcome(synced, admin, user.user_id, code) == "purchase"

    await eventually(served, 10, "loyalty serves the unblocked user")
    fresh = await synced.auth.login(user.email)
    await synced.auth.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(),
        metadata=(("authorization", f"Bearer {fresh.access_token}"),),
    )
    await eventually(
        lambda: _mirrored(synced, user.user_id, ("DELETED", 4)), 10, "deletion mirrored"
    )
    assert await _outcome(synced, admin, user.user_id, code) == "USER_DELETED"


async def _mirrored(synced: Synced, user_id: str, expected: tuple[str, int]) -> bool:
    return (await mirror(synced.loyalty, [user_id])).get(user_id) == expected


def _event(user_id: str, status: Any, version: int) -> bytes:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return events_pb2.UserEvent(
        event_id=str(uuid.uuid4()),
        user_id=user_id,
        status=status,
        version=version,
        occurred_at=stamp,
    ).SerializeToString()


async def _publish(bodies: list[bytes], at_once: bool = False) -> None:
    """In order, each confirmed before the next; `at_once`: every one sent before any is
    confirmed (a burst arrives faster than the consumer applies it)."""
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)

        def send(body: bytes) -> Awaitable[Any]:
            message = aio_pika.Message(body, content_type=CONTENT_TYPE)
            return exchange.publish(message, routing_key="user.status_changed")

        if at_once:
            await asyncio.gather(*(send(body) for body in bodies))
            return
        for body in bodies:
            await send(body)


async def test_duplicates_and_reordering_change_nothing(synced: Synced) -> None:
    user_id = str(uuid.uuid4())
    blocked, active = auth_pb2.USER_STATUS_BLOCKED, auth_pb2.USER_STATUS_ACTIVE
    await _publish(
        [
            _event(user_id, blocked, 3),
            _event(user_id, active, 1),
            _event(user_id, blocked, 3),
            _event(user_id, active, 2),
            _event(user_id, active, 1),
        ]
    )
    await eventually(lambda: _mirrored(synced, user_id, ("BLOCKED", 3)), 10, "newest kept")
    marker = str(uuid.uuid4())  # once a later message is applied, the others were handled
    await _publish([_event(marker, active, 1)])
    await eventually(lambda: _mirrored(synced, marker, ("ACTIVE", 1)), 10, "marker applied")
    assert (await mirror(synced.loyalty, [user_id]))[user_id] == ("BLOCKED", 3)


async def test_a_burst_is_applied_in_windows_with_every_version_exact(
    synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 events of 100 users, shuffled, each sent twice: the consumer applies them a
    window per statement (so more than one at a time), acknowledges every window (else the
    prefetch limit would stall it), and each user ends at their newest version."""
    windows: list[int] = []

    async def counted(conn: Any, changes: list[tuple[str, str, int]]) -> list[tuple[str, int]]:
        windows.append(len(changes))
        return await apply_user_statuses(conn, changes)

    monkeypatch.setattr(user_events, "apply_user_statuses", counted)
    users = [str(uuid.uuid4()) for _ in range(100)]
    statuses = [auth_pb2.USER_STATUS_ACTIVE, auth_pb2.USER_STATUS_BLOCKED]
    bodies = [_event(u, statuses[v % 2], v) for u in users for v in range(1, 11)] * 2
    random.Random(15).shuffle(bodies)
    # At once: sent one by one, each confirmed first, they can arrive slower than a window is
    # applied, and every window is then one event.
    await _publish(bodies, at_once=True)
    expected = {u: ("ACTIVE", 10) for u in users}  # version 10: statuses[0]

    async def exact() -> bool:
        return await mirror(synced.loyalty, users) == expected

    await eventually(exact, 60, "every user at their newest version")
    assert max(windows) > 1, windows


async def test_a_poison_message_is_parked_and_the_rest_applied(synced: Synced) -> None:
    dead_before = await _queue_depth(f"{QUEUE}.dead")
    user_id = str(uuid.uuid4())
    await _publish(
        [
            b"\xff\x00 not a protobuf",
            _event("not-a-uuid", auth_pb2.USER_STATUS_ACTIVE, 1),
            _event(user_id, auth_pb2.USER_STATUS_BLOCKED, 1),
            _event(user_id, auth_pb2.USER_STATUS_ACTIVE, 2),
        ]
    )
    await eventually(lambda: _mirrored(synced, user_id, ("ACTIVE", 2)), 10, "later ones applied")

    async def parked() -> bool:
        return await _queue_depth(f"{QUEUE}.dead") == dead_before + 2

    await eventually(parked, 10, "both poison messages in the dead-letter queue")


async def _queue_depth(name: str) -> int:
    connection = await aio_pika.connect(TEST_ENV["RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count: int = queue.declaration_result.message_count or 0
        return count


async def _serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def test_1000_changes_during_a_20_second_broker_outage_all_arrive(synced: Synced) -> None:
    admin = await synced.auth.new_admin()
    users = [await synced.auth.new_user() for _ in range(20)]
    ids = [u.user_id for u in users]
    await eventually(lambda: _all_mirrored(synced, ids), 20, "registrations mirrored")
    await synced.proxy.cut()
    outage_started = asyncio.get_running_loop().time()
    statuses = [auth_pb2.USER_STATUS_BLOCKED, auth_pb2.USER_STATUS_ACTIVE]
    for round_ in range(50):  # 20 users x 50 changes = 1000 status changes
        await asyncio.gather(
            *(_status(synced, admin, user_id, statuses[round_ % 2]) for user_id in ids)
        )
    for address in (synced.auth.address, synced.loyalty.address):
        await eventually(_health_is(address, False), 20, f"{address} NOT_SERVING")
    # The outage lasts at least 20 seconds in all, whatever the changes took.
    await asyncio.sleep(max(0.0, 20 - (asyncio.get_running_loop().time() - outage_started)))
    assert (await truth(synced.auth, ids)) != (await mirror(synced.loyalty, ids))
    await synced.proxy.open()
    await eventually(lambda: _all_mirrored(synced, ids), 60, "the backlog drained")
    final = await truth(synced.auth, ids)
    assert {v for _, v in final.values()} == {51}  # registered at 1, then 50 changes
    assert await mirror(synced.loyalty, ids) == final
    for address in (synced.auth.address, synced.loyalty.address):
        await eventually(_health_is(address, True), 20, f"{address} SERVING again")


def _health_is(address: str, serving: bool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _serving(address) is serving

    return check


async def _all_mirrored(synced: Synced, ids: list[str]) -> bool:
    return await mirror(synced.loyalty, ids) == await truth(synced.auth, ids)
