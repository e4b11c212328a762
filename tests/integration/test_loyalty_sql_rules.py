"""The server-side functions (loyalty_service/store/sql/: loyalty_decide, loyalty_apply,
loyalty_use, loyalty_discount) and the Python domain rules (eligibility.rejection_reason,
referrals.rejection_reason, pricing.quote) give the same answer for every reason code, every
discount kind and every rounding and bounding edge: each case sets up real rows, asks both, and
compares. A rule changed in one place and not the other fails here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from common.user_status import UserStatus
from loyalty_service.domain import campaigns as campaign_rules
from loyalty_service.domain import eligibility
from loyalty_service.domain import referrals as referral_rules
from loyalty_service.domain.pricing import quote
from loyalty_service.domain.purchases import PurchaseStatus
from loyalty_service.domain.reasons import Reason
from loyalty_service.store import codes
from loyalty_service.store import referrals as referral_store
from loyalty_service.store.redemption import PgRedemption
from loyalty_service.store.referrals import PgReferrals
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.integration.test_loyalty_promo import new_code

NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Attempted:
    code: str
    tariff_id: str
    user_id: str


Setup = Callable[[asyncpg.Pool], Awaitable[Attempted]]


async def _code(pool: asyncpg.Pool, **columns: Any) -> str:
    values = {
        "code": new_code(),
        "discount_kind": "PERCENT_OFF",
        "discount_value": 10,
        "all_users": True,
        "per_user_limit": 0,
    } | columns
    names = ", ".join(values)
    params = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await pool.execute(f"INSERT INTO promo_codes ({names}) VALUES ({params})", *values.values())
    return str(values["code"])


def _user() -> str:
    return str(uuid.uuid4())


async def _live_purchase(pool: asyncpg.Pool, user_id: str) -> None:
    """A purchase the user made earlier with some other code (written as loyalty_use would)."""
    other = await _code(pool)
    outcome = await PgRedemption(pool).use(other, "monthly", user_id, None, _user(), NOW)
    assert outcome.reason is None


def _plain(tariff: str = "monthly", user: Callable[[], str] = _user, **columns: Any) -> Setup:
    async def setup(pool: asyncpg.Pool) -> Attempted:
        return Attempted(await _code(pool, **columns), tariff, user())

    return setup


TARIFF_PREFIX = "sql-rules-"


def _priced(price: int, **columns: Any) -> Setup:
    """A tariff of its own at `price` (the seeded ones are multiples of 100, where percents
    never round)."""

    async def setup(pool: asyncpg.Pool) -> Attempted:
        tariff = TARIFF_PREFIX + new_code()
        await pool.execute(
            "INSERT INTO tariffs (tariff_id, name, price_minor, period_days)"
            " VALUES ($1, $1, $2, 30)",
            tariff,
            price,
        )
        return Attempted(await _code(pool, **columns), tariff, _user())

    return setup


def _user_status(status: str) -> Setup:
    return _user_status_of(status=status)


def _user_status_of(status: str, **columns: Any) -> Setup:
    async def setup(pool: asyncpg.Pool) -> Attempted:
        user_id = _user()
        await pool.execute(
            "INSERT INTO users (user_id, status, version) VALUES ($1, $2, 1)", user_id, status
        )
        return Attempted(await _code(pool, **columns), "monthly", user_id)

    return setup


async def _no_such_code(pool: asyncpg.Pool) -> Attempted:
    return Attempted("NO-SUCH-" + new_code(), "monthly", _user())


async def _audience_user(pool: asyncpg.Pool) -> Attempted:
    code, user_id = await _code(pool, all_users=False), _user()
    await pool.execute(
        "INSERT INTO promo_code_users (code, user_id) VALUES ($1, $2)", code, user_id
    )
    return Attempted(code, "monthly", user_id)


async def _audience_group(pool: asyncpg.Pool) -> Attempted:
    code, user_id, group_id = await _code(pool, all_users=False), _user(), _user()
    await pool.execute("INSERT INTO groups (group_id, name) VALUES ($1, $2)", group_id, group_id)
    await pool.execute("INSERT INTO group_members VALUES ($1, $2)", group_id, user_id)
    await pool.execute("INSERT INTO promo_code_groups VALUES ($1, $2)", code, group_id)
    return Attempted(code, "monthly", user_id)


async def _not_first(pool: asyncpg.Pool) -> Attempted:
    user_id = _user()
    await _live_purchase(pool, user_id)
    return Attempted(await _code(pool, first_purchase_only=True), "monthly", user_id)


async def _used(pool: asyncpg.Pool, code: str, user_id: str) -> bool:
    """Whether a use by this user went through."""
    outcome = await PgRedemption(pool).use(code, "monthly", user_id, None, _user(), NOW)
    return outcome.reason is None


async def _first(pool: asyncpg.Pool) -> Attempted:
    return Attempted(await _code(pool, first_purchase_only=True), "monthly", _user())


async def _first_after_a_cancelled_one(pool: asyncpg.Pool) -> Attempted:
    """Only a live (PENDING or COMPLETED) purchase counts as an earlier one."""
    user_id = _user()
    await _live_purchase(pool, user_id)
    await _end_purchases(pool, user_id, "CANCELLED")
    return Attempted(await _code(pool, first_purchase_only=True), "monthly", user_id)


async def _end_purchases(pool: asyncpg.Pool, user_id: str, status: str) -> None:
    await pool.execute("UPDATE purchases SET status = $2 WHERE user_id = $1", user_id, status)
    await pool.execute("UPDATE referrals SET status = $2 WHERE referee_id = $1", user_id, status)


async def _exhausted(pool: asyncpg.Pool) -> Attempted:
    code = await _code(pool, max_uses=1)
    assert await _used(pool, code, _user())
    return Attempted(code, "monthly", _user())


async def _exhausted_by_the_audience(pool: asyncpg.Pool) -> Attempted:
    code, member = await _code(pool, all_users=False, max_uses=1), _user()
    await pool.execute("INSERT INTO promo_code_users (code, user_id) VALUES ($1, $2)", code, member)
    assert await _used(pool, code, member)
    return Attempted(code, "monthly", _user())


async def _exhausted_and_budget_spent(pool: asyncpg.Pool) -> Attempted:
    code = await _code(pool, max_uses=1, budget_minor=2990)
    assert await _used(pool, code, _user())
    return Attempted(code, "monthly", _user())


def _used_by_the_user(times: int, **columns: Any) -> Setup:
    async def setup(pool: asyncpg.Pool) -> Attempted:
        code, user_id = await _code(pool, **columns), _user()
        for _ in range(times):
            assert await _used(pool, code, user_id)
        return Attempted(code, "monthly", user_id)

    return setup


async def _budget_partly_spent(pool: asyncpg.Pool) -> Attempted:
    """5000 of budget, 2990 spent by another user: 2010 left, short of this 2990."""
    code = await _code(pool, budget_minor=5000)
    assert await _used(pool, code, _user())
    return Attempted(code, "monthly", _user())


async def _last_use_left(pool: asyncpg.Pool) -> Attempted:
    code = await _code(pool, max_uses=40)
    for _ in range(39):
        outcome = await PgRedemption(pool).use(code, "monthly", _user(), None, _user(), NOW)
        assert outcome.reason is None
    return Attempted(code, "monthly", _user())


def _referral(
    enabled: bool = True,
    self_use: bool = False,
    referred: bool = False,
    bought: bool = False,
    status: str = "",
    tariff: str = "monthly",
    deactivated: bool = False,
    ended: str = "",
    referee: tuple[str, int] = ("AMOUNT_OFF", 5000),
    referrer_status: str = "",
) -> Setup:
    async def setup(pool: asyncpg.Pool) -> Attempted:
        await pool.execute(
            "UPDATE referral_program SET enabled = $1, referee_kind = $2, referee_value = $3",
            enabled,
            *referee,
        )
        referrer, user_id = _user(), _user()
        code = await _referral_code(pool, referrer, deactivated)
        if self_use:
            user_id = referrer
        if referred:
            earlier = await _referral_code(pool, _user(), False)
            outcome = await PgRedemption(pool).use(earlier, "monthly", user_id, None, _user(), NOW)
            assert outcome.reason is None, outcome.reason
        if bought:
            await _live_purchase(pool, user_id)
        if ended:
            await _end_purchases(pool, user_id, ended)
        if status:
            await pool.execute(
                "INSERT INTO users (user_id, status, version) VALUES ($1, $2, 1)", user_id, status
            )
        if referrer_status:
            await pool.execute(
                "INSERT INTO users (user_id, status, version) VALUES ($1, $2, 1)",
                referrer,
                referrer_status,
            )
        return Attempted(code, tariff, user_id)

    return setup


async def _status_of(pool: asyncpg.Pool, user_id: str) -> UserStatus:
    found = await pool.fetchval("SELECT status FROM users WHERE user_id = $1", user_id)
    return UserStatus(found or "ACTIVE")


async def _referral_code(pool: asyncpg.Pool, owner: str, deactivated: bool) -> str:
    code = new_code()
    assert await PgReferrals(pool).insert_code_row(code, owner)
    assert await PgReferrals(pool).claim_personal_code(owner, code)
    if deactivated:
        await pool.execute("UPDATE promo_codes SET deactivated_at = now() WHERE code = $1", code)
    return code


async def _campaign(
    pool: asyncpg.Pool, status: str = "ACTIVE", max_uses: int = 0, budget: int | None = None
) -> str:
    """A campaign with its counter slots split as CreateCampaign splits them."""
    campaign_id = _user()
    await pool.execute(
        "INSERT INTO campaigns (campaign_id, name, kind, status, discount_kind, discount_value,"
        " max_uses, budget_minor) VALUES ($1, $5, 'CAMPAIGN', $2, 'PERCENT_OFF', 10, $3, $4)",
        campaign_id,
        status,
        max_uses,
        budget,
        f"campaign {campaign_id}",
    )
    for slot, (uses, money) in enumerate(campaign_rules.slot_split(max_uses, budget)):
        await pool.execute(
            "INSERT INTO campaign_slots (campaign_id, slot, uses_left, budget_left_minor)"
            " VALUES ($1, $2, $3, $4)",
            campaign_id,
            slot,
            uses,
            money,
        )
    return campaign_id


def _in_campaign(
    status: str = "ACTIVE",
    max_uses: int = 0,
    budget: int | None = None,
    used_by_others: int = 0,
    user_status: str = "",
    **columns: Any,
) -> Setup:
    """A code of a campaign, after `used_by_others` uses of other codes of the campaign."""

    async def setup(pool: asyncpg.Pool) -> Attempted:
        campaign_id = await _campaign(pool, "ACTIVE", max_uses, budget)
        for _ in range(used_by_others):
            assert await _used(pool, await _code(pool, campaign_id=campaign_id), _user())
        await pool.execute(
            "UPDATE campaigns SET status = $2 WHERE campaign_id = $1", campaign_id, status
        )
        user_id = _user()
        if user_status:
            await pool.execute(
                "INSERT INTO users (user_id, status, version) VALUES ($1, $2, 1)",
                user_id,
                user_status,
            )
        return Attempted(await _code(pool, campaign_id=campaign_id, **columns), "monthly", user_id)

    return setup


async def _single_use_code_used_in_a_campaign(pool: asyncpg.Pool) -> Attempted:
    campaign_id = await _campaign(pool, max_uses=10, budget=10**6)
    code = await _code(pool, campaign_id=campaign_id, max_uses=1)
    assert await _used(pool, code, _user())
    return Attempted(code, "monthly", _user())


DAY = timedelta(days=1)
CASES: dict[str, tuple[Setup, Reason | None]] = {
    "allowed, percent": (_plain(), None),
    "allowed, fixed price": (_plain(discount_kind="FIXED_PRICE", discount_value=19900), None),
    "allowed, amount off beyond the price": (
        _plain(discount_kind="AMOUNT_OFF", discount_value=10**7),
        None,
    ),
    "allowed, percent with a cap": (_plain(discount_value=50, max_discount_minor=1000), None),
    "allowed, yearly within its tariffs": (_plain("yearly", tariff_ids=["yearly"]), None),
    "allowed, a user of the audience": (_audience_user, None),
    "allowed, a group of the audience": (_audience_group, None),
    "allowed, a first purchase": (_first, None),
    "allowed, the last use": (_last_use_left, None),
    "allowed, within the budget": (_plain(budget_minor=2990), None),
    "no such code": (_no_such_code, Reason.PROMO_CODE_NOT_FOUND),
    "blocked user": (_user_status("BLOCKED"), Reason.USER_BLOCKED),
    "deleted user": (_user_status("DELETED"), Reason.USER_DELETED),
    "deactivated": (_plain(deactivated_at=NOW - DAY), Reason.PROMO_CODE_INACTIVE),
    "deactivated and expired": (
        _plain(deactivated_at=NOW - DAY, ends_at=NOW - DAY),
        Reason.PROMO_CODE_INACTIVE,
    ),
    "not started": (_plain(starts_at=NOW + DAY), Reason.PROMO_CODE_NOT_STARTED),
    "expired": (_plain(ends_at=NOW - DAY), Reason.PROMO_CODE_EXPIRED),
    "expired at this instant": (_plain(ends_at=NOW), Reason.PROMO_CODE_EXPIRED),
    "no such tariff": (_plain("weekly"), Reason.TARIFF_NOT_FOUND),
    "not for this tariff": (_plain(tariff_ids=["yearly"]), Reason.PROMO_CODE_NOT_FOR_TARIFF),
    "another currency": (_plain(currency="USD"), Reason.PROMO_CODE_NOT_FOR_TARIFF),
    "below the minimum": (_plain(min_price_minor=30000), Reason.PROMO_CODE_BELOW_MINIMUM),
    "not in the audience": (_plain(all_users=False), Reason.PROMO_CODE_NOT_FOR_USER),
    "not a first purchase": (_not_first, Reason.PROMO_CODE_FIRST_PURCHASE_ONLY),
    "exhausted": (_exhausted, Reason.PROMO_CODE_EXHAUSTED),
    "exhausted and budget spent": (_exhausted_and_budget_spent, Reason.PROMO_CODE_EXHAUSTED),
    "budget short of this discount": (_plain(budget_minor=2989), Reason.PROMO_CODE_BUDGET_SPENT),
    "capped discount within the budget": (
        _plain(discount_value=90, max_discount_minor=100, budget_minor=100),
        None,
    ),
    "user limit": (_used_by_the_user(1, per_user_limit=1), Reason.PROMO_CODE_USER_LIMIT_REACHED),
    "referral, allowed": (_referral(), None),
    "referral, program off": (_referral(enabled=False), Reason.REFERRAL_PROGRAM_OFF),
    "referral, own code": (_referral(self_use=True), Reason.REFERRAL_SELF_USE),
    "referral, already referred": (_referral(referred=True), Reason.REFERRAL_ALREADY_REFERRED),
    "referral, not first purchase": (_referral(bought=True), Reason.REFERRAL_NOT_FIRST_PURCHASE),
    "referral, blocked user": (_referral(status="BLOCKED"), Reason.USER_BLOCKED),
    "referral, deactivated": (_referral(deactivated=True), Reason.PROMO_CODE_INACTIVE),
    "referral, owner blocked": (
        _referral(referrer_status="BLOCKED"),
        Reason.REFERRAL_CODE_INACTIVE,
    ),
    "referral, owner deleted": (
        _referral(referrer_status="DELETED"),
        Reason.REFERRAL_CODE_INACTIVE,
    ),
    "referral, owner active": (_referral(referrer_status="ACTIVE"), None),
    "referral, deactivated and owner blocked": (
        _referral(deactivated=True, referrer_status="BLOCKED"),
        Reason.PROMO_CODE_INACTIVE,
    ),
    "referral, owner deleted and program off": (
        _referral(enabled=False, referrer_status="DELETED"),
        Reason.REFERRAL_CODE_INACTIVE,
    ),
    "referral, no such tariff": (_referral(tariff="weekly"), Reason.TARIFF_NOT_FOUND),
    "referral, off and own code": (
        _referral(enabled=False, self_use=True),
        Reason.REFERRAL_PROGRAM_OFF,
    ),
    # Discount kinds and the bounds of a discount (loyalty_discount, pricing.discount_amount).
    "allowed, percent rounds half up": (_priced(1005, discount_value=10), None),  # 100.5: 101
    "allowed, percent rounds below half down": (_priced(1004, discount_value=10), None),
    "allowed, percent of one minor unit": (_priced(1, discount_value=50), None),  # 0.5: 1
    "allowed, percent rounded, then capped": (
        _priced(1005, discount_value=10, max_discount_minor=100),
        None,
    ),
    "allowed, a hundred percent off": (_plain(discount_value=100), None),
    "allowed, a zero cap": (_plain(discount_value=50, max_discount_minor=0), None),
    "allowed, fixed price above the price": (
        _plain(discount_kind="FIXED_PRICE", discount_value=50000),
        None,
    ),
    "allowed, fixed price of zero": (_plain(discount_kind="FIXED_PRICE", discount_value=0), None),
    "allowed, amount off the whole price": (
        _plain(discount_kind="AMOUNT_OFF", discount_value=29900),
        None,
    ),
    "allowed, amount off capped": (
        _plain(discount_kind="AMOUNT_OFF", discount_value=5000, max_discount_minor=1000),
        None,
    ),
    "allowed, a free tariff": (_priced(0, discount_kind="AMOUNT_OFF", discount_value=100), None),
    # The edges of each check: the bound itself is allowed.
    "allowed, started at this instant": (_plain(starts_at=NOW), None),
    "allowed, ends a moment later": (_plain(ends_at=NOW + timedelta(microseconds=1)), None),
    "allowed, at the minimum price": (_plain(min_price_minor=29900), None),
    "allowed, one of its tariffs": (_plain(tariff_ids=["yearly", "monthly"]), None),
    "allowed, an active user the mirror knows": (_user_status("ACTIVE"), None),
    "allowed, within the user's limit": (_used_by_the_user(1, per_user_limit=2), None),
    "allowed, no user limit after uses": (_used_by_the_user(2, per_user_limit=0), None),
    "allowed, first purchase after a cancelled one": (_first_after_a_cancelled_one, None),
    "budget partly spent": (_budget_partly_spent, Reason.PROMO_CODE_BUDGET_SPENT),
    # The order of the checks: the first one that fails is the reason.
    "blocked user of a deactivated code": (
        _user_status_of(deactivated_at=NOW - DAY, status="BLOCKED"),
        Reason.USER_BLOCKED,
    ),
    "not started and no such tariff": (
        _plain("weekly", starts_at=NOW + DAY),
        Reason.PROMO_CODE_NOT_STARTED,
    ),
    "another currency and below the minimum": (
        _plain(currency="USD", min_price_minor=30000),
        Reason.PROMO_CODE_NOT_FOR_TARIFF,
    ),
    # Outside the audience nothing else about the code is told (issue 26).
    "below the minimum and not in the audience": (
        _plain(min_price_minor=30000, all_users=False),
        Reason.PROMO_CODE_NOT_FOR_USER,
    ),
    "expired, not for the tariff and not in the audience": (
        _plain(ends_at=NOW - DAY, tariff_ids=["yearly"], all_users=False),
        Reason.PROMO_CODE_NOT_FOR_USER,
    ),
    "deactivated and not in the audience": (
        _plain(deactivated_at=NOW - DAY, all_users=False),
        Reason.PROMO_CODE_NOT_FOR_USER,
    ),
    "not in the audience and exhausted": (
        _exhausted_by_the_audience,
        Reason.PROMO_CODE_NOT_FOR_USER,
    ),
    "budget short and user limit": (
        _used_by_the_user(1, per_user_limit=1, budget_minor=5000),
        Reason.PROMO_CODE_BUDGET_SPENT,
    ),
    # Referral codes: the program's discount, and a referral given back counts no more.
    "referral, percent off": (_referral(referee=("PERCENT_OFF", 15)), None),
    "referral, fixed price": (_referral(referee=("FIXED_PRICE", 9900)), None),
    "referral, after a cancelled referral": (_referral(referred=True, ended="CANCELLED"), None),
    "referral, after an expired purchase": (_referral(bought=True, ended="EXPIRED"), None),
    "referral, deleted user": (_referral(status="DELETED"), Reason.USER_DELETED),
    "referral, deactivated and off": (
        _referral(deactivated=True, enabled=False),
        Reason.PROMO_CODE_INACTIVE,
    ),
    "referral, own code and already referred": (
        _referral(self_use=True, referred=True),
        Reason.REFERRAL_SELF_USE,
    ),
    # Campaigns: the status first (after the user's), then the campaign-wide counters, after
    # the code's own.
    "campaign, allowed": (_in_campaign(), None),
    "campaign paused": (_in_campaign("PAUSED"), Reason.PROMO_CODE_CAMPAIGN_PAUSED),
    "campaign ended": (_in_campaign("ENDED"), Reason.PROMO_CODE_INACTIVE),
    "campaign paused, code not started": (
        _in_campaign("PAUSED", starts_at=NOW + DAY),
        Reason.PROMO_CODE_CAMPAIGN_PAUSED,
    ),
    "campaign paused, not in the audience": (
        _in_campaign("PAUSED", all_users=False),
        Reason.PROMO_CODE_NOT_FOR_USER,
    ),
    "campaign paused, code deactivated": (
        _in_campaign("PAUSED", deactivated_at=NOW - DAY),
        Reason.PROMO_CODE_INACTIVE,
    ),
    "campaign paused, user blocked": (
        _in_campaign("PAUSED", user_status="BLOCKED"),
        Reason.USER_BLOCKED,
    ),
    "campaign, the last use": (_in_campaign(max_uses=3, used_by_others=2), None),
    "campaign uses all taken": (
        _in_campaign(max_uses=2, used_by_others=2),
        Reason.PROMO_CODE_EXHAUSTED,
    ),
    "campaign budget of exactly one discount": (_in_campaign(budget=2990), None),
    "campaign budget spread thin over its slots, enough in all": (
        _in_campaign(budget=2990 * 2, used_by_others=1),
        None,
    ),
    "campaign budget short of this discount": (
        _in_campaign(budget=2989),
        Reason.PROMO_CODE_BUDGET_SPENT,
    ),
    "campaign budget spent by another code": (
        _in_campaign(budget=5000, used_by_others=1),
        Reason.PROMO_CODE_BUDGET_SPENT,
    ),
    "campaign uses taken and budget spent": (
        _in_campaign(max_uses=1, budget=2990, used_by_others=1),
        Reason.PROMO_CODE_EXHAUSTED,
    ),
    "campaign budget spent and the user's limit": (
        _in_campaign(budget=2990, used_by_others=1, per_user_limit=1),
        Reason.PROMO_CODE_BUDGET_SPENT,
    ),
    "code exhausted in a campaign with uses left": (
        _single_use_code_used_in_a_campaign,
        Reason.PROMO_CODE_EXHAUSTED,
    ),
}


@pytest.fixture
async def pool(loyalty_server: LoyaltyTestServer) -> AsyncIterator[asyncpg.Pool]:
    pool: asyncpg.Pool = loyalty_server.app.pool
    program = await pool.fetchrow("SELECT * FROM referral_program")
    yield pool
    await pool.execute("DELETE FROM tariffs WHERE tariff_id LIKE $1", TARIFF_PREFIX + "%")
    await pool.execute(
        "UPDATE referral_program SET enabled = $1, referee_kind = $2, referee_value = $3",
        program["enabled"],
        program["referee_kind"],
        program["referee_value"],
    )


async def _python_answer(pool: asyncpg.Pool, attempt: Attempted) -> tuple[Reason | None, int]:
    """The reference: the domain's rules over one read of the rows (store.codes.attempt)."""
    facts = await codes.attempt(pool, attempt.code, attempt.tariff_id, attempt.user_id, NOW)
    code, tariff = facts.code, facts.tariff
    if code is None or code.referrer_id is None:
        reason = eligibility.rejection_reason(facts)
        discount = code.discount if code else None
    else:
        program = await PgReferrals(pool).program()
        history = await referral_store.referee_history(pool, attempt.user_id)
        reason = referral_rules.rejection_reason(
            referral_rules.ReferralAttempt(
                code,
                code.referrer_id,
                attempt.user_id,
                facts.user_status,
                tariff,
                program,
                history,
                await _status_of(pool, code.referrer_id),
            )
        )
        discount = program.referee
    if reason is not None or code is None or tariff is None or discount is None:
        return reason, -1
    return None, quote(tariff.price, discount, code.max_discount).discount


async def _rejections(pool: asyncpg.Pool, attempt: Attempted) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM rejections WHERE code = $1 AND user_id = $2",
        attempt.code,
        attempt.user_id,
    )
    return count


@pytest.mark.parametrize("case", list(CASES))
async def test_sql_and_python_rules_give_the_same_answer(pool: asyncpg.Pool, case: str) -> None:
    setup, expected = CASES[case]
    attempt = await setup(pool)
    python_reason, python_discount = await _python_answer(pool, attempt)
    assert python_reason == expected, "the case does not set up what it says"

    applied = await PgRedemption(pool).apply(attempt.code, attempt.tariff_id, attempt.user_id, NOW)
    assert applied.reason == expected
    assert await _rejections(pool, attempt) == (1 if expected else 0)

    used = await PgRedemption(pool).use(
        attempt.code, attempt.tariff_id, attempt.user_id, None, _user(), NOW
    )
    assert used.reason == expected
    assert await _rejections(pool, attempt) == (2 if expected else 0)
    if expected is None:
        assert applied.price is not None and used.purchase is not None
        assert applied.price.discount == used.purchase.discount == python_discount
        assert used.purchase.final == applied.price.base - python_discount
        assert used.is_new and used.purchase.status is PurchaseStatus.PENDING


def test_every_reason_a_use_can_be_refused_with_has_a_case() -> None:
    not_of_a_use = {
        Reason.PURCHASE_NOT_FOUND,
        Reason.PURCHASE_NOT_CANCELLABLE,
        Reason.PURCHASE_NOT_CONFIRMABLE,
        Reason.PURCHASE_NOT_REFUNDABLE,
        Reason.PURCHASE_SETTLEMENT_FORBIDDEN,
        Reason.REFERRAL_NOT_FOUND,
        Reason.GROUP_NOT_FOUND,
        Reason.GROUP_EXISTS,
        Reason.PROMO_CODE_EXISTS,
        Reason.TOO_MANY_PROMO_ATTEMPTS,  # the throttle's, before the database is asked
    }
    covered = {reason for _, reason in CASES.values() if reason is not None}
    assert covered == set(Reason) - not_of_a_use
