"""The referral messages: protobuf to domain inputs, and domain values to protobuf."""

from __future__ import annotations

from loyalty_service.domain import referrals as rules
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.referrals import ReferralTotals
from loyalty_service.use_cases.events import discount_message
from protogen.loyalty.promo.v1 import promo_pb2

_KINDS = {
    "percent_off": DiscountKind.PERCENT_OFF,
    "amount_off": DiscountKind.AMOUNT_OFF,
    "fixed_price": DiscountKind.FIXED_PRICE,
}


def discount_input(message: promo_pb2.Discount) -> tuple[Discount | None, str]:
    """The discount (None when no kind is set) and the currency it was given in."""
    kind = message.WhichOneof("kind")
    if kind is None:
        return None, ""
    if kind == "percent_off":
        return Discount(DiscountKind.PERCENT_OFF, message.percent_off), ""
    money: promo_pb2.Money = getattr(message, kind)
    return Discount(_KINDS[kind], money.amount_minor), money.currency


def program_input(message: promo_pb2.ReferralProgram) -> rules.ReferralProgram:
    return rules.check_program(
        message.enabled,
        discount_input(message.referee),
        discount_input(message.reward),
        message.reward_valid_days,
        message.max_rewards_per_referrer,
    )


def program(value: rules.ReferralProgram) -> promo_pb2.ReferralProgram:
    return promo_pb2.ReferralProgram(
        enabled=value.enabled,
        referee=discount_message(value.referee),
        reward=discount_message(value.reward),
        reward_valid_days=value.reward_valid_days,
        max_rewards_per_referrer=value.max_rewards_per_referrer,
    )


def personal_code(value: rules.PersonalCode) -> promo_pb2.ReferralCode:
    return promo_pb2.ReferralCode(
        code=value.code, referred_count=value.referred_count, rewards_issued=value.rewards_issued
    )


def report(value: ReferralTotals) -> promo_pb2.ReferralReport:
    return promo_pb2.ReferralReport(
        referrals_started=value.started,
        referrals_completed=value.completed,
        referrals_given_back=value.given_back,
        rewards_issued=value.rewards_issued,
        rewards_withheld_by_reason=value.withheld_by_reason,
        rejections_by_reason=value.rejections_by_reason,
        top_referrers=[
            promo_pb2.TopReferrer(
                user_id=t.user_id,
                code=t.code,
                referred_count=t.referred_count,
                rewards_issued=t.rewards_issued,
            )
            for t in value.top_referrers
        ],
    )
