"""The referral reward use cases over the in-memory store: the sweeper's release, a refund
before and after it, an admin's review. (Races and the SQL: tests/integration.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.user_status import UserStatus
from loyalty_service.domain.reasons import Reason, Rejection
from loyalty_service.domain.referrals import Referral, RewardState, Signal, Withheld
from loyalty_service.use_cases.referrals import Referrals
from tests.unit.fakes.loyalty import FakeLoyaltyStore

REFERRAL = Referral("p-1", "bob", "alice")
PAST = datetime.now(UTC) - timedelta(seconds=1)


async def _seeded(state: RewardState, **fields: object) -> tuple[FakeLoyaltyStore, Referrals]:
    store = FakeLoyaltyStore()
    async with store.transaction() as tx:
        assert await tx.rewards.take_slot("alice", 10, 0, PAST.date()) is None
        await tx.rewards.record(REFERRAL, state, **fields)  # type: ignore[arg-type]
    return store, Referrals(store)


async def _state(store: FakeLoyaltyStore) -> RewardState:
    found = await store.single.rewards.get("p-1")
    assert found is not None
    return found.state


async def test_the_release_issues_one_code_and_a_refund_then_claws_it_back() -> None:
    store, referrals = await _seeded(RewardState.PENDING, release_at=PAST)
    assert await referrals.release_due() == 1
    assert await referrals.release_due() == 0  # released once
    reward = await store.single.rewards.get("p-1")
    assert reward is not None and reward.state is RewardState.ISSUED and reward.reward_code
    assert store.state.outbox == ["referral.rewarded"]
    async with store.transaction() as tx:
        assert await referrals.on_refund(tx, "p-1") == "alice"
    assert await _state(store) is RewardState.CLAWED_BACK
    assert store.state.codes[reward.reward_code].deactivated
    assert store.state.slots["alice"] == []  # the slot given back


async def test_a_refund_before_the_release_reverses_it() -> None:
    store, referrals = await _seeded(RewardState.PENDING, release_at=PAST + timedelta(days=1))
    async with store.transaction() as tx:
        await referrals.on_refund(tx, "p-1")
    assert await _state(store) is RewardState.REVERSED
    assert await referrals.release_due() == 0 and store.state.codes == {}
    assert store.state.outbox == ["referral.reversed"]


async def test_a_blocked_referrer_is_withheld_at_the_release() -> None:
    store, referrals = await _seeded(RewardState.PENDING, release_at=PAST)
    store.state.users["alice"] = UserStatus.BLOCKED
    await referrals.release_due()
    reward = await store.single.rewards.get("p-1")
    assert reward is not None and reward.state is RewardState.WITHHELD
    assert reward.withheld_reason == Withheld.REFERRER_BLOCKED.value
    assert store.state.codes == {}


@pytest.mark.parametrize(("approve", "after"), [(True, "ISSUED"), (False, "REJECTED")])
async def test_a_review_decides_a_held_referral_once(approve: bool, after: str) -> None:
    store, referrals = await _seeded(RewardState.HELD_FOR_REVIEW, signal=Signal.SAME_ADDRESS)
    assert [r.purchase_id for r in await referrals.held(None, 10)] == ["p-1"]
    decided = await referrals.review("admin-1", "p-1", approve)
    assert decided.state.value == after and decided.reviewed_by == "admin-1"
    again = await referrals.review("admin-2", "p-1", not approve)
    assert again == decided  # answered as it stands
    assert len(store.state.codes) == (1 if approve else 0)
    with pytest.raises(Rejection) as missing:
        await referrals.review("admin-1", "p-2", True)
    assert missing.value.reason == Reason.REFERRAL_NOT_FOUND
