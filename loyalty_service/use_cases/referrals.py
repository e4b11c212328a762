"""The referral use cases: the program, personal codes, and the referral's part in a confirm
(the reward held, or withheld, or held for review), the sweeper's release, a refund (reversed
or clawed back), an admin's review, and a cancel or expiry (the referral given back). Its part
in a use (the checks and the referral row) is in the use's one store call
(RedemptionRepository.use); the referee's address is noted right after it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from common.telemetry.trace_context import domain_step
from loyalty_service import metrics
from loyalty_service.domain import referrals as rules
from loyalty_service.domain.codes import DEFAULT_RANDOM_LENGTH, random_code
from loyalty_service.domain.reasons import USER_STATUS_REASON, Reason, Rejection
from loyalty_service.domain.referrals import ReferralReward, RewardState
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases import events
from loyalty_service.use_cases.ports import Repositories, UnitOfWork

# Rounds of regenerating a code that collided before giving up.
MAX_GENERATION_ROUNDS = 20
TOP_REFERRERS = 10
# Matured rewards released per transaction by the sweeper.
RELEASE_BATCH = 100
# Only for tests and `make run`; loyalty's config holds the real key (LOYALTY_ADDRESS_HASH_KEY).
DEV_ADDRESS_KEY = b"development address-hash key: set LOYALTY_ADDRESS_HASH_KEY"


def _slot_day(reward: ReferralReward) -> date:
    """The UTC day the reward took its slot (its row was written by that confirm)."""
    assert reward.created_at is not None
    return reward.created_at.astimezone(UTC).date()


class Referrals:
    def __init__(self, store: UnitOfWork, address_key: bytes = DEV_ADDRESS_KEY) -> None:
        self._store = store
        self._address_key = address_key

    async def program(self) -> rules.ReferralProgram:
        return await self._store.single.referrals.program()

    async def set_program(self, program: rules.ReferralProgram) -> rules.ReferralProgram:
        return await self._store.single.referrals.set_program(program)

    async def report(self) -> rules.ReferralTotals:
        totals = await self._store.single.referrals.totals(TOP_REFERRERS)
        rewards = await self._store.single.rewards.totals()
        return replace(
            totals, rewards_by_state=rewards.by_state, held_by_signal=rewards.held_by_signal
        )

    def address_hash(self, address: str) -> bytes:
        """The keyed hash an address is kept as (never the address itself)."""
        return rules.address_hash(self._address_key, address)

    async def personal_code(self, user_id: str, address: str = "") -> rules.PersonalCode:
        """The user's code, created on their first request (noting, as a keyed hash, the
        address it was given to); none for blocked or deleted users."""
        status = await self._store.single.users.status_of(user_id)
        if status in USER_STATUS_REASON:
            raise Rejection(USER_STATUS_REASON[status])
        found = await self._store.single.referrals.personal_code(user_id)
        if found is None:
            await self._create_code(user_id, address)
            found = await self._store.single.referrals.personal_code(user_id)
        assert found is not None
        return found

    async def _create_code(self, user_id: str, address: str) -> None:
        for _ in range(MAX_GENERATION_ROUNDS):
            try:
                code = random_code("", DEFAULT_RANDOM_LENGTH)
                if await self._try_code(user_id, code, address):
                    return
            except _AlreadyHasCode:
                return
        raise AssertionError("no free referral code after many rounds")

    async def _try_code(self, user_id: str, code: str, address: str) -> bool:
        """Whether `code` became the user's; False when the text was taken."""
        async with self._store.transaction() as tx:
            if not await tx.referrals.insert_code_row(code, user_id):
                return False
            if not await tx.referrals.claim_personal_code(user_id, code):
                # A concurrent first request won: this code goes with the transaction.
                raise _AlreadyHasCode
            if address:
                await tx.rewards.note_owner_address(user_id, self.address_hash(address))
        return True

    async def settle(self, tx: Repositories, purchase_id: str) -> str | None:
        """In the transaction that confirms a purchase: the referral's reward held (PENDING
        until the hold ends, released at once with no hold), held for review, or withheld,
        recorded once. Returns the referrer (None: not a referral)."""
        referral = await tx.referrals.complete(purchase_id)
        if referral is None:
            return None
        program = await tx.referrals.program()
        now = datetime.now(UTC)
        withheld = await self._withheld(tx, referral, program, now)
        signal = None if withheld else rules.signal_of(await tx.rewards.signal_facts(purchase_id))
        state = rules.settled_state(withheld, signal)
        release_at = rules.release_at(program, now) if state is RewardState.PENDING else None
        await tx.rewards.record(
            referral, state, withheld=withheld, signal=signal, release_at=release_at
        )
        # Counted before the commit: a rolled-back confirm over-counts, never under-counts.
        metrics.REFERRAL_OUTCOMES.labels(withheld.value if withheld else state.value).inc()
        await self._announce(tx, referral, state, signal, release_at, program)
        return referral.referrer_id

    async def _withheld(
        self,
        tx: Repositories,
        referral: rules.Referral,
        program: rules.ReferralProgram,
        now: datetime,
    ) -> rules.Withheld | None:
        """The referrer's status, then both caps in one conditional update (a slot taken)."""
        withheld = rules.withheld_for(await tx.users.status_of(referral.referrer_id))
        if withheld is not None:
            return withheld
        return await tx.rewards.take_slot(
            referral.referrer_id,
            program.max_rewards_per_referrer,
            program.max_rewards_per_referrer_per_day,
            now.date(),
        )

    async def _announce(
        self,
        tx: Repositories,
        referral: rules.Referral,
        state: RewardState,
        signal: rules.Signal | None,
        release_at: datetime | None,
        program: rules.ReferralProgram,
    ) -> None:
        if state is RewardState.HELD_FOR_REVIEW:
            await events.referral_changed(tx.outbox, events.REFERRAL_HELD, referral, state, signal)
        elif state is RewardState.PENDING and rules.releases_at_once(program):
            reward = await tx.rewards.get(referral.purchase_id)
            assert reward is not None
            await self._release(tx, reward, program)
        elif state is RewardState.PENDING:
            await events.referral_changed(
                tx.outbox, events.REFERRAL_REWARD_PENDING, referral, state, None, release_at
            )

    async def release_due(self, batch: int = RELEASE_BATCH) -> int:
        """The sweeper's step: up to `batch` rewards whose hold has ended, claimed with SKIP
        LOCKED (a second sweeper takes others; a refund holding one is passed over) and
        released in this one transaction with their codes and events. How many it claimed."""
        async with self._store.transaction() as tx:
            due = await tx.rewards.claim_due(datetime.now(UTC), batch)
            if not due:
                return 0
            program = await tx.referrals.program()
            for reward in due:
                await self._release(tx, reward, program)
        return len(due)

    async def _release(
        self,
        tx: Repositories,
        reward: ReferralReward,
        program: rules.ReferralProgram,
        reviewed_by: str | None = None,
    ) -> RewardState:
        """PENDING or HELD_FOR_REVIEW (locked by the caller) → ISSUED with a new code, or
        WITHHELD when the referrer was blocked or deleted meanwhile."""
        now = datetime.now(UTC)
        status = await tx.users.status_of(reward.referrer_id)
        found = rules.reward_for(program, status, now)
        if found.withheld is not None:
            await self._move(
                tx, reward, RewardState.WITHHELD, withheld=found.withheld, by=reviewed_by
            )
            return RewardState.WITHHELD
        code = await self._issue(tx, reward.referral, found)
        await self._move(tx, reward, RewardState.ISSUED, code=code, by=reviewed_by)
        metrics.REFERRAL_OUTCOMES.labels(RewardState.ISSUED.value).inc()
        return RewardState.ISSUED

    async def _move(
        self,
        tx: Repositories,
        reward: ReferralReward,
        after: RewardState,
        *,
        code: str | None = None,
        withheld: rules.Withheld | None = None,
        by: str | None = None,
    ) -> None:
        """One conditional move of a reward the caller holds locked; a cap slot goes back
        when the reward leaves the states that hold one."""
        moved = await tx.rewards.move(
            reward.purchase_id, reward.state, after, code=code, withheld=withheld, reviewed_by=by
        )
        # The caller locked the row in this transaction: nobody else can have moved it.
        assert moved, f"reward {reward.purchase_id} left {reward.state} under our lock"
        if rules.gives_slot_back(reward.state, after):
            await tx.rewards.give_slot_back(reward.referrer_id, _slot_day(reward))

    async def on_refund(self, tx: Repositories, purchase_id: str) -> str | None:
        """In the refund's transaction (the purchase locked and REFUNDED): the referral
        REFUNDED and its reward reversed before the release, or its code taken back after
        it (CLAWED_BACK, or CLAWBACK_FAILED when already used). Returns the referrer."""
        referral = await tx.rewards.refund_referral(purchase_id)
        if referral is None:
            return None
        reward = await tx.rewards.get(purchase_id, lock=True)
        if reward is None:
            return referral.referrer_id  # confirmed before rewards had rows: nothing held
        used = False
        if reward.state is RewardState.ISSUED and reward.reward_code:
            used = not await tx.rewards.take_back_code(reward.reward_code)
        after = rules.refund_state(reward.state, used)
        if after is not None:
            await self._move(tx, reward, after)
            await events.referral_changed(tx.outbox, events.REFERRAL_REVERSED, referral, after)
            metrics.REFERRAL_OUTCOMES.labels(after.value).inc()
        return referral.referrer_id

    async def held(self, after: tuple[datetime, str] | None, limit: int) -> list[ReferralReward]:
        return await self._store.single.rewards.held_page(after, limit)

    async def review(self, admin_id: str, purchase_id: str, approve: bool) -> ReferralReward:
        """An admin's decision on a held referral: approve releases its reward now, reject
        gives none. The row lock makes two concurrent reviews one decision; a referral no
        longer held is answered as it stands."""
        async with self._store.transaction() as tx:
            reward = await tx.rewards.get(purchase_id, lock=True)
            if reward is None:
                raise Rejection(Reason.REFERRAL_NOT_FOUND)
            after = rules.review_state(reward.state, approve)
            if after is RewardState.ISSUED:
                await self._release(tx, reward, await tx.referrals.program(), admin_id)
            elif after is RewardState.REJECTED:
                await self._move(tx, reward, after, by=admin_id)
                await events.referral_changed(
                    tx.outbox, events.REFERRAL_REVERSED, reward.referral, after, reward.signal
                )
            found = await tx.rewards.get(purchase_id)
        assert found is not None
        return found

    @domain_step("referral.issue_reward")
    async def _issue(self, tx: Repositories, referral: rules.Referral, reward: rules.Reward) -> str:
        """A one-time code open to the referrer alone, valid until the reward's end."""
        spec = CodeSpec(
            max_uses=1,
            per_user_limit=1,
            ends_at=reward.ends_at,
            description="referral reward",
        )
        for _ in range(MAX_GENERATION_ROUNDS):
            made = await tx.codes.insert_batch(
                [random_code("", DEFAULT_RANDOM_LENGTH)], spec, reward.discount
            )
            if made:
                await tx.codes.add_audience(made, [referral.referrer_id], [])
                await events.referral_rewarded(
                    tx.outbox,
                    referral.referrer_id,
                    referral.referee_id,
                    referral.purchase_id,
                    made[0],
                    reward.discount,
                    reward.ends_at,
                )
                return made[0]
        raise AssertionError("no free reward code after many rounds")

    async def give_back(self, tx: Repositories, purchase_id: str, status: str) -> str | None:
        """A cancelled purchase's referral, given back; returns the referrer (None: none)."""
        return await tx.referrals.end(purchase_id, status)


class _AlreadyHasCode(Exception):
    pass
