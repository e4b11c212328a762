"""The referral messages: protobuf to domain inputs, and domain values to protobuf."""

from __future__ import annotations

from common.rpc.proto_time import timestamp
from loyalty_service.domain import referrals as rules
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.referrals import ReferralTotals
from loyalty_service.use_cases.events import discount_message, signal_value
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
        message.reward_hold_seconds if message.HasField("reward_hold_seconds") else None,
        message.max_rewards_per_referrer_per_day,
    )


def program(value: rules.ReferralProgram) -> promo_pb2.ReferralProgram:
    return promo_pb2.ReferralProgram(
        enabled=value.enabled,
        referee=discount_message(value.referee),
        reward=discount_message(value.reward),
        reward_valid_days=value.reward_valid_days,
        max_rewards_per_referrer=value.max_rewards_per_referrer,
        reward_hold_seconds=value.reward_hold_seconds,
        max_rewards_per_referrer_per_day=value.max_rewards_per_referrer_per_day,
    )


def personal_code(value: rules.PersonalCode) -> promo_pb2.ReferralCode:
    return promo_pb2.ReferralCode(
        code=value.code,
        referred_count=value.referred_count,
        rewards_issued=value.rewards_issued,
        rewards_pending=value.rewards_pending,
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
        rewards_by_state=value.rewards_by_state,
        held_by_signal=value.held_by_signal,
    )


def referral(value: rules.ReferralReward) -> promo_pb2.Referral:
    message = promo_pb2.Referral(
        referral_id=value.purchase_id,
        referrer_id=value.referrer_id,
        referee_id=value.referee_id,
        code=value.code,
        state=promo_pb2.ReferralRewardState.Value(f"REFERRAL_REWARD_STATE_{value.state.value}"),
        signal=signal_value(value.signal),
        withheld_reason=value.withheld_reason or "",
        reward_code=value.reward_code or "",
        reviewed_by=value.reviewed_by or "",
        created_at=timestamp(value.created_at),
        release_at=timestamp(value.release_at),
        reviewed_at=timestamp(value.reviewed_at),
    )
    return message
