"""Loyalty's own domain events (protos/loyalty/events/v1/promo_events.proto), written to the
outbox in the transaction of the change they report."""

from __future__ import annotations

import uuid
from datetime import datetime

from common.rpc.proto_time import now_timestamp, timestamp
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.referrals import Referral, RewardState, Signal
from loyalty_service.domain.schedule import schedule
from loyalty_service.use_cases.ports import OutboxRepository
from protogen.loyalty.events.v1 import promo_events_pb2
from protogen.loyalty.promo.v1 import promo_pb2

PURCHASE_COMPLETED = "purchase.completed"
PURCHASE_CANCELLED = "purchase.cancelled"
PURCHASE_REFUNDED = "purchase.refunded"
PURCHASE_EXPIRED = "purchase.expired"
REFERRAL_REWARDED = "referral.rewarded"
REFERRAL_REWARD_PENDING = "referral.reward_pending"
REFERRAL_HELD = "referral.held"
REFERRAL_REVERSED = "referral.reversed"

# The routing key of the event for a purchase that has just reached each status.
PURCHASE_KEYS = {
    PurchaseStatus.COMPLETED: PURCHASE_COMPLETED,
    PurchaseStatus.CANCELLED: PURCHASE_CANCELLED,
    PurchaseStatus.REFUNDED: PURCHASE_REFUNDED,
    PurchaseStatus.EXPIRED: PURCHASE_EXPIRED,
}


def discount_message(discount: Discount, currency: str = "RUB") -> promo_pb2.Discount:
    if discount.kind is DiscountKind.PERCENT_OFF:
        return promo_pb2.Discount(percent_off=discount.value)
    money = promo_pb2.Money(amount_minor=discount.value, currency=currency)
    if discount.kind is DiscountKind.AMOUNT_OFF:
        return promo_pb2.Discount(amount_off=money)
    return promo_pb2.Discount(fixed_price=money)


def _money(amount_minor: int, currency: str) -> promo_pb2.Money:
    return promo_pb2.Money(amount_minor=amount_minor, currency=currency)


def _schedule(purchase: Purchase) -> list[promo_pb2.PricePeriod]:
    periods = schedule(purchase.duration, purchase.duration_periods, purchase.base, purchase.final)
    return [
        promo_pb2.PricePeriod(periods=p.periods, price=_money(p.price, purchase.currency))
        for p in periods
    ]


def purchase_event(
    purchase: Purchase, referrer_id: str | None, refund_reason: str = ""
) -> promo_events_pb2.PurchaseEvent:
    """The purchase as it now stands, with everything billing needs to charge or pay back."""
    currency = purchase.currency
    return promo_events_pb2.PurchaseEvent(
        event_id=str(uuid.uuid4()),
        purchase_id=purchase.purchase_id,
        user_id=purchase.user_id,
        code=purchase.code,
        tariff_id=purchase.tariff_id,
        final_price=_money(purchase.final, currency),
        status=promo_pb2.PurchaseStatus.Value(f"PURCHASE_STATUS_{purchase.status.value}"),
        referrer_id=referrer_id or "",
        occurred_at=now_timestamp(),
        base_price=_money(purchase.base, currency),
        discount=_money(purchase.discount, currency),
        schedule=_schedule(purchase),
        refund_reason=refund_reason,
    )


async def purchase_changed(
    outbox: OutboxRepository,
    purchase: Purchase,
    referrer_id: str | None,
    refund_reason: str = "",
) -> None:
    """purchase.completed, .cancelled, .refunded or .expired, by the purchase's new status."""
    event = purchase_event(purchase, referrer_id, refund_reason)
    key = PURCHASE_KEYS[purchase.status]
    await outbox.add(event.event_id, key, event.SerializeToString())


async def referral_rewarded(
    outbox: OutboxRepository,
    referrer_id: str,
    referee_id: str,
    purchase_id: str,
    code: str,
    reward: Discount,
    ends_at: datetime,
) -> None:
    event = promo_events_pb2.ReferralRewarded(
        event_id=str(uuid.uuid4()),
        referrer_id=referrer_id,
        referee_id=referee_id,
        purchase_id=purchase_id,
        reward_code=code,
        reward=discount_message(reward),
        reward_expires_at=timestamp(ends_at),
        occurred_at=now_timestamp(),
    )
    await outbox.add(event.event_id, REFERRAL_REWARDED, event.SerializeToString())


def signal_value(signal: Signal | None) -> promo_pb2.ReferralSignal.ValueType:
    if signal is None:
        return promo_pb2.REFERRAL_SIGNAL_UNSPECIFIED
    return promo_pb2.ReferralSignal.Value(f"REFERRAL_SIGNAL_{signal.value}")


async def referral_changed(
    outbox: OutboxRepository,
    routing_key: str,
    referral: Referral,
    state: RewardState,
    signal: Signal | None = None,
    release_at: datetime | None = None,
) -> None:
    """referral.reward_pending, referral.held or referral.reversed (the state says which
    way it went: REVERSED, REJECTED, CLAWED_BACK or CLAWBACK_FAILED)."""
    event = promo_events_pb2.ReferralChanged(
        event_id=str(uuid.uuid4()),
        referrer_id=referral.referrer_id,
        referee_id=referral.referee_id,
        purchase_id=referral.purchase_id,
        state=promo_pb2.ReferralRewardState.Value(f"REFERRAL_REWARD_STATE_{state.value}"),
        signal=signal_value(signal),
        release_at=timestamp(release_at),
        occurred_at=now_timestamp(),
    )
    await outbox.add(event.event_id, routing_key, event.SerializeToString())
