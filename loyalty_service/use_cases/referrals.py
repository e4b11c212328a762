"""The referral use cases: the program, personal codes, and the referral's part in a confirm
(the reward) and a cancel or expiry (the referral given back). Its part in a use (the checks
and the referral row) is in the use's one store call (RedemptionRepository.use)."""

from __future__ import annotations

from datetime import UTC, datetime

from common.telemetry import metrics
from common.telemetry.trace_context import domain_step
from loyalty_service.domain import referrals as rules
from loyalty_service.domain.codes import DEFAULT_RANDOM_LENGTH, random_code
from loyalty_service.domain.reasons import USER_STATUS_REASON, Rejection
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.use_cases import events
from loyalty_service.use_cases.ports import Repositories, UnitOfWork

# Rounds of regenerating a code that collided before giving up.
MAX_GENERATION_ROUNDS = 20
TOP_REFERRERS = 10


class Referrals:
    def __init__(self, store: UnitOfWork) -> None:
        self._store = store

    async def program(self) -> rules.ReferralProgram:
        return await self._store.single.referrals.program()

    async def set_program(self, program: rules.ReferralProgram) -> rules.ReferralProgram:
        return await self._store.single.referrals.set_program(program)

    async def report(self) -> rules.ReferralTotals:
        return await self._store.single.referrals.totals(TOP_REFERRERS)

    async def personal_code(self, user_id: str) -> rules.PersonalCode:
        """The user's code, created on their first request; none for blocked or deleted users."""
        status = await self._store.single.users.status_of(user_id)
        if status in USER_STATUS_REASON:
            raise Rejection(USER_STATUS_REASON[status])
        found = await self._store.single.referrals.personal_code(user_id)
        if found is None:
            await self._create_code(user_id)
            found = await self._store.single.referrals.personal_code(user_id)
        assert found is not None
        return found

    async def _create_code(self, user_id: str) -> None:
        for _ in range(MAX_GENERATION_ROUNDS):
            try:
                if await self._try_code(user_id, random_code("", DEFAULT_RANDOM_LENGTH)):
                    return
            except _AlreadyHasCode:
                return
        raise AssertionError("no free referral code after many rounds")

    async def _try_code(self, user_id: str, code: str) -> bool:
        """Whether `code` became the user's; False when the text was taken."""
        async with self._store.transaction() as tx:
            if not await tx.referrals.insert_code_row(code, user_id):
                return False
            if not await tx.referrals.claim_personal_code(user_id, code):
                # A concurrent first request won: this code goes with the transaction.
                raise _AlreadyHasCode
        return True

    async def settle(self, tx: Repositories, purchase_id: str) -> str | None:
        """In the transaction that confirms a purchase: the referrer's reward, or the reason
        there is none, recorded once. Returns the referrer (None: not a referral)."""
        referral = await tx.referrals.complete(purchase_id)
        if referral is None:
            return None
        program = await tx.referrals.program()
        status = await tx.users.status_of(referral.referrer_id)
        reward = rules.reward_for(program, status, datetime.now(UTC))
        withheld = reward.withheld
        cap = program.max_rewards_per_referrer
        if withheld is None and not await tx.referrals.take_reward(referral.referrer_id, cap):
            withheld = rules.Withheld.REFERRAL_REWARD_CAP_REACHED
        code = None if withheld else await self._issue(tx, referral, reward)
        await tx.referrals.record_outcome(referral, code, withheld.value if withheld else None)
        # Counted before the commit: a rolled-back confirm over-counts, never under-counts.
        metrics.REFERRAL_OUTCOMES.labels(withheld.value if withheld else "ISSUED").inc()
        return referral.referrer_id

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

    async def on_refund(self, tx: Repositories, purchase_id: str) -> str | None:
        """In the transaction that refunds a purchase: its referral ends REFUNDED. Returns the
        referrer (None: not a referral).

        A placeholder for the settlement branch: the referral branch (issue 23) replaces the
        body with the reward's reversal or clawback."""
        return await tx.referrals.end(purchase_id, "REFUNDED")


class _AlreadyHasCode(Exception):
    pass
