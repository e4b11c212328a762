"""Referral rewards held, released, reversed and reviewed, over gRPC against real PostgreSQL:
the story with a hold of two seconds, refunds before and after the release, the races (a
refund against the release, two sweepers), fraud signals and the admin's review, and both
caps under concurrent confirms. Counts are read in SQL.

RefundPurchase is another branch's RPC; a refund here is what its transaction does for the
referral: the purchase locked and set REFUNDED, then Referrals.on_refund, in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from loyalty_service.domain.purchases import PurchaseStatus
from loyalty_service.jobs.sweeper import release_rewards
from loyalty_service.store.unit_of_work import PgUnitOfWork
from loyalty_service.use_cases.referrals import Referrals
from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.fixtures.sync import eventually
from tests.grpc_helpers import reason_of
from tests.referral_helpers import (
    code_of,
    confirm,
    from_address,
    reward_codes,
    set_program,
    use,
)

Code = grpc.StatusCode
HOLD = 2  # seconds
LOCK_WAITS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
async def held(loyalty_server: LoyaltyTestServer, admin: TestUser) -> AsyncIterator[Any]:
    """The program with a hold of two seconds; reset to the referral tests' default after."""
    await set_program(loyalty_server.admin, admin, reward_hold_seconds=HOLD)
    yield loyalty_server
    await set_program(loyalty_server.admin, admin)


def _referrals(server: LoyaltyTestServer) -> Referrals:
    assert server.app.referrals is not None
    return server.app.referrals


async def _refund(server: LoyaltyTestServer, purchase_id: str) -> str | None:
    """What RefundPurchase's transaction does for the referral (see the module's note)."""
    async with PgUnitOfWork(server.app.pool).transaction() as tx:
        await tx.purchases.get(purchase_id, lock=True)
        await tx.purchases.set_status(purchase_id, PurchaseStatus.REFUNDED)
        return await _referrals(server).on_refund(tx, purchase_id)


async def _state(server: LoyaltyTestServer, purchase_id: str) -> tuple[str, str | None]:
    row = await server.app.pool.fetchrow(
        "SELECT outcome, code FROM referral_rewards WHERE purchase_id = $1", purchase_id
    )
    return row["outcome"], row["code"]


async def _referred(
    server: LoyaltyTestServer, admin: TestUser, code: str, auth: AuthTestServer, n: int
) -> list[str]:
    """`n` new referees buy with `code` and are confirmed; their purchase ids."""
    referees = [auth.token_for() for _ in range(n)]
    made = await asyncio.gather(*(use(server.promo, r, code) for r in referees))
    await asyncio.gather(*(confirm(server.promo, admin, p.purchase_id) for p in made))
    return [p.purchase_id for p in made]


async def _mature(server: LoyaltyTestServer, purchase_ids: list[str]) -> None:
    await server.app.pool.execute(
        "UPDATE referral_rewards SET release_at = now() - interval '1 second'"
        " WHERE purchase_id = ANY($1::uuid[]) AND outcome = 'PENDING'",
        purchase_ids,
    )


async def _books(server: LoyaltyTestServer, referrer_id: str) -> dict[str, Any]:
    """One snapshot of a referrer's rewards, codes and events."""
    row = await server.app.pool.fetchrow(
        "SELECT"
        " (SELECT count(*) FROM referral_rewards w JOIN purchases p USING (purchase_id)"
        "   WHERE w.referrer_id = $1 AND p.status = 'COMPLETED'"
        "   AND w.outcome = 'ISSUED') AS issued_unrefunded,"
        " (SELECT count(*) FROM referral_rewards w JOIN purchases p USING (purchase_id)"
        "   WHERE w.referrer_id = $1 AND p.status = 'REFUNDED'"
        "   AND w.outcome NOT IN ('REVERSED', 'CLAWED_BACK')) AS refunded_kept,"
        " (SELECT count(*) FROM referral_rewards w"
        "   WHERE w.referrer_id = $1 AND w.code IS NOT NULL) AS with_code,"
        " (SELECT count(*) FROM promo_codes c JOIN promo_code_users u USING (code)"
        "   WHERE u.user_id = $1 AND c.description = 'referral reward') AS codes,"
        " (SELECT count(*) FROM promo_codes c JOIN promo_code_users u USING (code)"
        "   WHERE u.user_id = $1 AND c.description = 'referral reward'"
        "   AND c.deactivated_at IS NULL) AS live_codes,"
        " (SELECT count(*) FROM outbox o WHERE o.routing_key = 'referral.rewarded'"
        "   AND position(convert_to($1::text, 'UTF8') IN o.payload) > 0) AS rewarded_events,"
        " (SELECT rewards_issued FROM referral_codes WHERE user_id = $1) AS slots,"
        " (SELECT count(*) FROM referral_rewards w WHERE w.referrer_id = $1"
        "   AND w.outcome IN ('PENDING', 'HELD_FOR_REVIEW', 'ISSUED', 'CLAWBACK_FAILED'))"
        "   AS holding",
        referrer_id,
    )
    return dict(row)


def _exact(books: dict[str, Any], matured_unrefunded: int) -> None:
    """Rewards equal matured, unrefunded referrals; every code has its row and its event."""
    assert books["issued_unrefunded"] == matured_unrefunded, books
    assert books["live_codes"] == matured_unrefunded, books
    assert books["refunded_kept"] == 0, books
    assert books["with_code"] == books["codes"] == books["rewarded_events"], books
    assert books["slots"] == books["holding"], books


async def test_held_then_released_or_reversed_or_clawed_back(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice = auth_server.token_for()
    code = await code_of(held.promo, alice)
    bob, carol, dave = await _referred(held, admin, code, auth_server, 3)
    for purchase_id in (bob, carol, dave):
        state, reward_code = await _state(held, purchase_id)
        assert (state, reward_code) == ("PENDING", None)
    mine = await held.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=alice.metadata()
    )
    assert (mine.rewards_issued, mine.rewards_pending) == (0, 3)
    assert await reward_codes(held.promo, alice) == []

    assert await _refund(held, carol) == alice.user_id  # before the release: reversed
    assert await _state(held, carol) == ("REVERSED", None)

    async def released() -> bool:
        await release_rewards(_referrals(held))  # the sweeper's step
        return len(await reward_codes(held.promo, alice)) == 2

    await eventually(released, HOLD + 20, "both rewards released when the hold ended")
    assert (await _state(held, bob))[0] == (await _state(held, dave))[0] == "ISSUED"
    assert await _state(held, carol) == ("REVERSED", None)  # never a code

    _, dave_code = await _state(held, dave)
    await use(held.promo, alice, str(dave_code))  # Alice spends Dave's reward
    await _refund(held, bob)  # after the release, unused: taken back
    await _refund(held, dave)  # after the release, used: recorded
    assert (await _state(held, bob))[0] == "CLAWED_BACK"
    assert (await _state(held, dave))[0] == "CLAWBACK_FAILED"
    assert await reward_codes(held.promo, alice) == []
    mine = await held.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=alice.metadata()
    )
    assert (mine.rewards_issued, mine.rewards_pending) == (1, 0)  # the one she kept
    keys = await held.app.pool.fetch(
        "SELECT routing_key, count(*) AS n FROM outbox"
        " WHERE position(convert_to($1::text, 'UTF8') IN payload) > 0 GROUP BY 1",
        alice.user_id,
    )
    assert {r["routing_key"]: r["n"] for r in keys} == {
        "referral.reward_pending": 3,
        "referral.rewarded": 2,
        "referral.reversed": 3,  # REVERSED, CLAWED_BACK, CLAWBACK_FAILED
        "purchase.completed": 3,
    }
    report = await held.admin.GetReferralReport(
        promo_pb2.GetReferralReportRequest(), metadata=admin.metadata()
    )
    assert {"REVERSED", "CLAWED_BACK", "CLAWBACK_FAILED"} <= set(report.rewards_by_state)


async def test_a_refund_waiting_on_the_release_claws_back_the_new_code(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    """The interleaving forced: the sweeper holds the claimed reward while the refund comes,
    so the refund waits and then finds it ISSUED."""
    alice = auth_server.token_for()
    (bob,) = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 1)
    await _mature(held, [bob])
    store = PgUnitOfWork(held.app.pool)
    async with store.transaction() as tx:
        claimed = await tx.rewards.get(bob, lock=True)  # as claim_due locks it
        assert claimed is not None and claimed.state.value == "PENDING"
        refund = asyncio.ensure_future(_refund(held, bob))

        async def refund_waits() -> bool:
            return bool(await held.app.pool.fetchval(LOCK_WAITS) >= 1)

        await eventually(refund_waits, 10, "the refund waits on the claimed reward")
        program = await tx.referrals.program()
        await _referrals(held)._release(tx, claimed, program)
    await refund
    assert (await _state(held, bob))[0] == "CLAWED_BACK"
    _exact(await _books(held, alice.user_id), 0)


async def test_100_refunds_racing_the_release(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice = auth_server.token_for()
    await set_program(held.admin, admin, reward_hold_seconds=HOLD, max_rewards_per_referrer=0)
    ids = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 150)
    await _mature(held, ids)
    refunded, kept = ids[:100], ids[100:]
    referrals = _referrals(held)
    sweeps = [referrals.release_due(batch=3) for _ in range(40)]
    await asyncio.gather(*sweeps, *(_refund(held, p) for p in refunded))
    await release_rewards(referrals)
    _exact(await _books(held, alice.user_id), len(kept))


async def test_two_sweepers_release_each_reward_once(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice = auth_server.token_for()
    await set_program(held.admin, admin, reward_hold_seconds=HOLD, max_rewards_per_referrer=0)
    ids = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 100)
    await _mature(held, ids)
    one, two = Referrals(PgUnitOfWork(held.app.pool)), _referrals(held)
    counts = await asyncio.gather(release_rewards(one), release_rewards(two))
    assert sum(counts) == 100
    _exact(await _books(held, alice.user_id), 100)


async def test_a_referrer_blocked_before_the_release_gets_nothing(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice = auth_server.token_for()
    (bob,) = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 1)
    await held.set_user_status(alice.user_id, "BLOCKED", 2)
    await _mature(held, [bob])
    await release_rewards(_referrals(held))
    row = await held.app.pool.fetchrow(
        "SELECT outcome, reason, code FROM referral_rewards WHERE purchase_id = $1", bob
    )
    assert tuple(row) == ("WITHHELD", "REFERRER_BLOCKED", None)
    _exact(await _books(held, alice.user_id), 0)


async def _held_list(server: LoyaltyTestServer, admin: TestUser) -> list[promo_pb2.Referral]:
    found: list[promo_pb2.Referral] = []
    token = ""
    while True:
        page = await server.admin.ListHeldReferrals(
            promo_pb2.ListHeldReferralsRequest(page_size=2, page_token=token),
            metadata=admin.metadata(),
        )
        found += page.referrals
        if not (token := page.next_page_token):
            return found


async def test_same_address_and_mutual_referrals_are_held_for_review(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice, bob, carol = (auth_server.token_for() for _ in range(3))
    shared = "198.51.100.23"
    alices = await code_of(held.promo, alice, address=shared)
    farmed = await use(held.promo, bob, alices, address=shared)  # Bob at Alice's address
    await confirm(held.promo, admin, farmed.purchase_id)
    bobs = await code_of(held.promo, bob)
    carols = await code_of(held.promo, carol)
    ring = await use(held.promo, alice, bobs)  # Alice referred Bob; now Bob refers Alice
    await confirm(held.promo, admin, ring.purchase_id)
    states = {p: await _state(held, p) for p in (farmed.purchase_id, ring.purchase_id)}
    assert {s for s, _ in states.values()} == {"HELD_FOR_REVIEW"}
    listed = {r.referral_id: r for r in await _held_list(held, admin)}
    assert listed[farmed.purchase_id].signal == promo_pb2.REFERRAL_SIGNAL_SAME_ADDRESS
    assert listed[ring.purchase_id].signal == promo_pb2.REFERRAL_SIGNAL_MUTUAL_REFERRAL
    assert listed[farmed.purchase_id].state == promo_pb2.REFERRAL_REWARD_STATE_HELD_FOR_REVIEW
    created = [r.created_at.ToDatetime() for r in await _held_list(held, admin)]
    assert created == sorted(created)  # oldest first
    report = await held.admin.GetReferralReport(
        promo_pb2.GetReferralReportRequest(), metadata=admin.metadata()
    )
    assert report.held_by_signal["SAME_ADDRESS"] >= 1
    assert report.held_by_signal["MUTUAL_REFERRAL"] >= 1
    mine = await held.promo.GetMyReferralCode(
        promo_pb2.GetMyReferralCodeRequest(), metadata=alice.metadata()
    )
    assert mine.rewards_pending == 1
    # An ordinary referral from another address is not held.
    dave = auth_server.token_for()
    plain = await use(held.promo, dave, carols)
    await confirm(held.promo, admin, plain.purchase_id)
    assert (await _state(held, plain.purchase_id))[0] == "PENDING"


async def _review(
    server: LoyaltyTestServer, admin: TestUser, referral_id: str, approve: bool
) -> Any:
    return await server.admin.ReviewReferral(
        promo_pb2.ReviewReferralRequest(referral_id=referral_id, approve=approve),
        metadata=admin.metadata(),
    )


async def test_approve_releases_one_reward_and_reject_none(
    held: LoyaltyTestServer, admin: TestUser, auth_server: AuthTestServer
) -> None:
    alice = auth_server.token_for()
    shared = "198.51.100.77"
    code = await code_of(held.promo, alice, address=shared)
    referees = [auth_server.token_for() for _ in range(2)]
    made = [await use(held.promo, r, code, address=shared) for r in referees]
    for purchase in made:
        await confirm(held.promo, admin, purchase.purchase_id)
    approved, rejected = (p.purchase_id for p in made)
    answers = await asyncio.gather(*(_review(held, admin, approved, True) for _ in range(5)))
    assert {a.state for a in answers} == {promo_pb2.REFERRAL_REWARD_STATE_ISSUED}
    assert len({a.reward_code for a in answers}) == 1
    assert answers[0].reviewed_by == admin.user_id and answers[0].HasField("reviewed_at")
    no = await _review(held, admin, rejected, False)
    assert no.state == promo_pb2.REFERRAL_REWARD_STATE_REJECTED and not no.reward_code
    again = await _review(held, admin, rejected, True)  # no longer held: as it stands
    assert again.state == promo_pb2.REFERRAL_REWARD_STATE_REJECTED
    assert len(await reward_codes(held.promo, alice)) == 1
    _exact(await _books(held, alice.user_id), 1)
    missing = _review(held, admin, "00000000-0000-4000-8000-000000000000", True)
    assert await reason_of(missing, Code.NOT_FOUND) == "REFERRAL_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _review(held, admin, "not-a-uuid", True)
    assert bad.value.code() == Code.INVALID_ARGUMENT
    user = auth_server.token_for()
    denied = held.admin.ReviewReferral(
        promo_pb2.ReviewReferralRequest(referral_id=approved, approve=True),
        metadata=from_address(user),
    )
    assert await reason_of(denied, Code.PERMISSION_DENIED) == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({"max_rewards_per_referrer": 7}, {"PENDING": 7, "REFERRAL_REWARD_CAP_REACHED": 43}),
        (
            {"max_rewards_per_referrer": 0, "max_rewards_per_referrer_per_day": 5},
            {"PENDING": 5, "REFERRAL_DAILY_CAP_REACHED": 45},
        ),
    ],
)
async def test_caps_are_exact_under_50_concurrent_confirms(
    held: LoyaltyTestServer,
    admin: TestUser,
    auth_server: AuthTestServer,
    caps: dict[str, int],
    expected: dict[str, int],
) -> None:
    await set_program(held.admin, admin, reward_hold_seconds=3600, **caps)
    alice = auth_server.token_for()
    ids = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 50)
    rows = await held.app.pool.fetch(
        "SELECT coalesce(reason, outcome) AS k, count(*) AS n FROM referral_rewards"
        " WHERE referrer_id = $1 GROUP BY 1",
        alice.user_id,
    )
    assert {r["k"]: r["n"] for r in rows} == expected
    # A reversal gives its slot back: the next referral is held again, not withheld.
    pending = await held.app.pool.fetchval(
        "SELECT purchase_id::text FROM referral_rewards WHERE purchase_id = ANY($1::uuid[])"
        " AND outcome = 'PENDING' LIMIT 1",
        ids,
    )
    await _refund(held, pending)
    (later,) = await _referred(held, admin, await code_of(held.promo, alice), auth_server, 1)
    assert (await _state(held, later))[0] == "PENDING"


async def test_the_program_carries_the_hold_and_the_daily_cap(
    loyalty_server: LoyaltyTestServer, admin: TestUser
) -> None:
    stub = loyalty_server.admin
    unset = promo_pb2.ReferralProgram(
        enabled=True,
        referee=promo_pb2.Discount(percent_off=10),
        reward=promo_pb2.Discount(percent_off=10),
        reward_valid_days=30,
        max_rewards_per_referrer=10,
    )
    try:
        got = await stub.SetReferralProgram(unset, metadata=admin.metadata())
        assert got.reward_hold_seconds == 1_209_600  # unset: 14 days
        unset.reward_hold_seconds = 0
        unset.max_rewards_per_referrer_per_day = 3
        got = await stub.SetReferralProgram(unset, metadata=admin.metadata())
        assert (got.reward_hold_seconds, got.max_rewards_per_referrer_per_day) == (0, 3)
        for field, value in (
            ("reward_hold_seconds", 31_536_001),
            ("reward_hold_seconds", -1),
            ("max_rewards_per_referrer_per_day", -1),
        ):
            bad = promo_pb2.ReferralProgram()
            bad.CopyFrom(unset)
            setattr(bad, field, value)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.SetReferralProgram(bad, metadata=admin.metadata())
            assert raised.value.code() == Code.INVALID_ARGUMENT, field
    finally:
        await set_program(stub, admin)
