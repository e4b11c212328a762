"""Protobuf to domain inputs, and domain values to protobuf."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.errors import InvalidArgument
from common.rpc.proto_time import timestamp as stamp
from common.rpc.proto_time import when
from loyalty_service.domain.codes import ActiveCode, PromoCode, status_of
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.groups import Group
from loyalty_service.domain.pricing import DiscountKind
from loyalty_service.domain.purchases import Purchase, PurchaseStatus
from loyalty_service.domain.reasons import RecordedRejection
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.schedule import Duration, PricePeriod, schedule
from loyalty_service.domain.specs import CodeSpec, MoneyInput
from loyalty_service.use_cases.administration import Report
from loyalty_service.use_cases.code_transfer import RowResult
from loyalty_service.use_cases.promotions import Quote
from protogen.loyalty.promo.v1 import promo_pb2


def money(amount: int, currency: str = "RUB") -> promo_pb2.Money:
    return promo_pb2.Money(amount_minor=amount, currency=currency)


def _money_input(value: promo_pb2.Money) -> MoneyInput:
    return MoneyInput(value.amount_minor, value.currency)


def _optional_money(message: Any, name: str) -> MoneyInput | None:
    return _money_input(getattr(message, name)) if message.HasField(name) else None


def duration_of(value: int, field: str = "duration") -> Duration:
    """UNSPECIFIED reads as ONCE, the default; a number the enum lacks is refused."""
    if value == 0:
        return Duration.ONCE
    if value not in promo_pb2.Duration.values():
        raise InvalidArgument.of(field, "unknown duration")
    name = promo_pb2.Duration.Name(promo_pb2.Duration.ValueType(value))
    return Duration(name.removeprefix("DURATION_"))


# The wire value of each domain value, looked up once: every purchase maps both.
_DURATIONS = {d: promo_pb2.Duration.Value(f"DURATION_{d.value}") for d in Duration}
_PURCHASE_STATUSES = {
    s: promo_pb2.PurchaseStatus.Value(f"PURCHASE_STATUS_{s.value}") for s in PurchaseStatus
}


def duration_value(duration: Duration) -> promo_pb2.Duration.ValueType:
    return _DURATIONS[duration]


def code_spec(message: promo_pb2.PromoCodeSpec) -> CodeSpec:
    kind = message.WhichOneof("discount")
    return CodeSpec(
        code=message.code,
        fixed_price=_money_input(message.fixed_price) if kind == "fixed_price" else None,
        percent_off=message.percent_off if kind == "percent_off" else None,
        amount_off=_money_input(message.amount_off) if kind == "amount_off" else None,
        starts_at=when(message, "starts_at"),
        ends_at=when(message, "ends_at"),
        max_uses=message.max_uses,
        per_user_limit=message.per_user_limit if message.HasField("per_user_limit") else 1,
        tariff_ids=tuple(message.tariff_ids),
        all_users=message.all_users,
        user_ids=tuple(message.user_ids),
        group_ids=tuple(message.group_ids),
        description=message.description,
        duration=duration_of(message.duration),
        duration_periods=message.duration_periods,
        max_discount=_optional_money(message, "max_discount"),
        budget=_optional_money(message, "budget"),
        first_purchase_only=message.first_purchase_only,
        min_price=_optional_money(message, "min_price"),
        refund_returns_use=(
            message.refund_returns_use if message.HasField("refund_returns_use") else True
        ),
    )


def _discount_fields(code: PromoCode) -> dict[str, Any]:
    kind = code.discount.kind
    if kind is DiscountKind.PERCENT_OFF:
        return {"percent_off": code.discount.value}
    field = "fixed_price" if kind is DiscountKind.FIXED_PRICE else "amount_off"
    return {field: money(code.discount.value, code.currency)}


def _campaign_fields(code: PromoCode) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "duration": duration_value(code.duration),
        "duration_periods": code.duration_periods,
        "first_purchase_only": code.first_purchase_only,
        "refund_returns_use": code.refund_returns_use,
    }
    for name in ("max_discount", "budget", "min_price"):
        value = getattr(code, name)
        if value is not None:
            fields[name] = money(value, code.currency)
    return fields


def promo_code(code: PromoCode) -> promo_pb2.PromoCode:
    spec = promo_pb2.PromoCodeSpec(
        code=code.code,
        starts_at=stamp(code.starts_at),
        ends_at=stamp(code.ends_at),
        max_uses=code.max_uses,
        per_user_limit=code.per_user_limit,
        tariff_ids=code.tariff_ids,
        all_users=code.all_users,
        user_ids=code.user_ids,
        group_ids=code.group_ids,
        description=code.description,
        **_discount_fields(code),
        **_campaign_fields(code),
    )
    status = status_of(code, datetime.now(UTC))
    return promo_pb2.PromoCode(
        code=code.code,
        spec=spec,
        status=promo_pb2.PromoCodeStatus.Value(f"PROMO_CODE_STATUS_{status.value}"),
        uses_taken=code.uses,
        uses_left=code.uses_left,
        deactivated=code.deactivated,
        created_at=stamp(code.created_at),
        budget_spent=money(code.budget_spent, code.currency),
        campaign_id=code.campaign_id,
    )


def active_code(active: ActiveCode) -> promo_pb2.ActivePromoCode:
    code = active.code
    return promo_pb2.ActivePromoCode(
        code=code.code,
        starts_at=stamp(code.starts_at),
        ends_at=stamp(code.ends_at),
        tariff_ids=code.tariff_ids,
        uses_left_for_user=active.uses_left_for_user,
        description=code.description,
        duration=duration_value(code.duration),
        duration_periods=code.duration_periods,
        **_discount_fields(code),
    )


def tariff(value: Tariff) -> promo_pb2.Tariff:
    return promo_pb2.Tariff(
        tariff_id=value.tariff_id,
        name=value.name,
        price=money(value.price, value.currency),
        period_days=value.period_days,
    )


def price_schedule(periods: tuple[PricePeriod, ...], currency: str) -> list[promo_pb2.PricePeriod]:
    return [
        promo_pb2.PricePeriod(periods=p.periods, price=money(p.price, currency)) for p in periods
    ]


def quote(value: Quote) -> promo_pb2.Quote:
    currency = value.tariff.currency
    return promo_pb2.Quote(
        code=value.code,
        tariff_id=value.tariff.tariff_id,
        base_price=money(value.price.base, currency),
        discount=money(value.price.discount, currency),
        final_price=money(value.price.final, currency),
        schedule=price_schedule(value.schedule, currency),
    )


def purchase(value: Purchase) -> promo_pb2.Purchase:
    currency = value.currency
    periods = schedule(value.duration, value.duration_periods, value.base, value.final)
    return promo_pb2.Purchase(
        purchase_id=value.purchase_id,
        code=value.code,
        tariff_id=value.tariff_id,
        final_price=money(value.final, currency),
        status=_PURCHASE_STATUSES[value.status],
        created_at=stamp(value.created_at),
        user_id=value.user_id,
        base_price=money(value.base, currency),
        discount=money(value.discount, currency),
        request_id=value.request_id or "",
        updated_at=stamp(value.updated_at),
        schedule=price_schedule(periods, currency),
    )


def group(value: Group) -> promo_pb2.Group:
    return promo_pb2.Group(
        group_id=value.group_id,
        name=value.name,
        member_count=value.member_count,
        created_at=stamp(value.created_at),
    )


def rejection(value: RecordedRejection) -> promo_pb2.Rejection:
    return promo_pb2.Rejection(
        rejection_id=str(value.rejection_id),
        occurred_at=stamp(value.occurred_at),
        user_id=value.user_id or "",
        code=value.code,
        tariff_id=value.tariff_id,
        reason=value.reason,
    )


def day(value: DayStats, currency: str) -> promo_pb2.DailyStats:
    return promo_pb2.DailyStats(
        date=value.date,
        uses=value.uses,
        confirms=value.confirms,
        cancels=value.cancels,
        rejections=value.rejections,
        discount_granted=money(value.discount_granted, currency),
    )


def report(value: Report) -> promo_pb2.PromoCodeReport:
    code = value.code
    return promo_pb2.PromoCodeReport(
        code=code.code,
        uses_taken=code.uses,
        uses_left=code.uses_left,
        purchases_by_status=value.purchases_by_status,
        rejections_by_reason=value.rejections_by_reason,
        discount_granted=money(code.budget_spent, code.currency),
        daily=[day(d, code.currency) for d in value.daily],
        budget=None if code.budget is None else money(code.budget, code.currency),
    )


def import_results(results: list[RowResult]) -> promo_pb2.ImportPromoCodesResponse:
    created = sum(1 for r in results if r.created)
    return promo_pb2.ImportPromoCodesResponse(
        results=[
            promo_pb2.ImportRowResult(
                row=r.row, code=r.code, created=r.created, reason=r.reason, message=r.message
            )
            for r in results
        ],
        created=created,
        failed=len(results) - created,
    )
