"""Loyalty's own domain events (protos/loyalty/events/v1/promo_events.proto), written to the
outbox in the transaction of the change they report."""

from __future__ import annotations

import uuid
from datetime import datetime

from common.rpc.proto_time import now_timestamp, timestamp
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.use_cases.ports import OutboxRepository
from protogen.loyalty.events.v1 import promo_events_pb2
from protogen.loyalty.promo.v1 import promo_pb2

PURCHASE_COMPLETED = "purchase.completed"
PURCHASE_CANCELLED = "purchase.cancelled"
REFERRAL_REWARDED = "referral.rewarded"


def discount_message(discount: Discount, currency: str = "RUB") -> promo_pb2.Discount:
    if discount.kind is DiscountKind.PERCENT_OFF:
        return promo_pb2.Discount(percent_off=discount.value)
    money = promo_pb2.Money(amount_minor=discount.value, currency=currency)
    if discount.kind is DiscountKind.AMOUNT_OFF:
        return promo_pb2.Discount(amount_off=money)
    return promo_pb2.Discount(fixed_price=money)


async def purchase_changed(
    outbox: OutboxRepository, purchase: Purchase, referrer_id: str | None
) -> None:
    """purchase.completed or purchase.cancelled, for the purchase as it now stands."""
    event = promo_events_pb2.PurchaseEvent(
        event_id=str(uuid.uuid4()),
        purchase_id=purchase.purchase_id,
        user_id=purchase.user_id,
        code=purchase.code,
        tariff_id=purchase.tariff_id,
        final_price=promo_pb2.Money(amount_minor=purchase.final, currency=purchase.currency),
        status=promo_pb2.PurchaseStatus.Value(f"PURCHASE_STATUS_{purchase.status.value}"),
        referrer_id=referrer_id or "",
        occurred_at=now_timestamp(),
    )
    completed = purchase.status is PurchaseStatus.COMPLETED
    key = PURCHASE_COMPLETED if completed else PURCHASE_CANCELLED
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
