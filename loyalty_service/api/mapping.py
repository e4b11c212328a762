"""Protobuf to domain inputs, and stored rows to protobuf."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import InvalidArgument
from loyalty.promo.v1 import promo_pb2
from loyalty_service.domain.codes import PromoCode, status_of
from loyalty_service.domain.eligibility import Tariff
from loyalty_service.domain.pricing import DiscountKind
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.schedule import Duration, PricePeriod, schedule
from loyalty_service.domain.specs import CodeSpec, MoneyInput
from loyalty_service.store.codes import to_code
from loyalty_service.use_cases.administration import Report
from loyalty_service.use_cases.code_transfer import RowResult
from loyalty_service.use_cases.promotions import Quote


def stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    result = Timestamp()
    result.FromDatetime(value)
    return result


def when(message: Any, name: str) -> datetime | None:
    return message.__getattribute__(name).ToDatetime(UTC) if message.HasField(name) else None


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


def duration_value(duration: Duration) -> promo_pb2.Duration.ValueType:
    return promo_pb2.Duration.Value(f"DURATION_{duration.value}")


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
    )


def _discount_fields(row: asyncpg.Record) -> dict[str, Any]:
    kind = DiscountKind(row["discount_kind"])
    if kind is DiscountKind.PERCENT_OFF:
        return {"percent_off": row["discount_value"]}
    field = "fixed_price" if kind is DiscountKind.FIXED_PRICE else "amount_off"
    return {field: money(row["discount_value"], row["currency"])}


def _campaign_fields(code: PromoCode) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "duration": duration_value(code.duration),
        "duration_periods": code.duration_periods,
        "first_purchase_only": code.first_purchase_only,
    }
    for name in ("max_discount", "budget", "min_price"):
        value = getattr(code, name)
        if value is not None:
            fields[name] = money(value, code.currency)
    return fields


def promo_code(row: asyncpg.Record) -> promo_pb2.PromoCode:
    code = to_code(row)
    spec = promo_pb2.PromoCodeSpec(
        code=code.code,
        starts_at=stamp(code.starts_at),
        ends_at=stamp(code.ends_at),
        max_uses=code.max_uses,
        per_user_limit=code.per_user_limit,
        tariff_ids=code.tariff_ids,
        all_users=code.all_users,
        user_ids=row["user_ids"],
        group_ids=row["group_ids"],
        description=row["description"],
        **_discount_fields(row),
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
        created_at=stamp(row["created_at"]),
        budget_spent=money(code.budget_spent, code.currency),
    )


def active_code(row: asyncpg.Record) -> promo_pb2.ActivePromoCode:
    code = to_code(row)
    left = None if code.per_user_limit == 0 else code.per_user_limit - row["user_uses"]
    return promo_pb2.ActivePromoCode(
        code=code.code,
        starts_at=stamp(code.starts_at),
        ends_at=stamp(code.ends_at),
        tariff_ids=code.tariff_ids,
        uses_left_for_user=left,
        description=row["description"],
        duration=duration_value(code.duration),
        duration_periods=code.duration_periods,
        **_discount_fields(row),
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


def purchase(row: asyncpg.Record) -> promo_pb2.Purchase:
    currency = row["currency"]
    return promo_pb2.Purchase(
        purchase_id=str(row["purchase_id"]),
        code=row["code"],
        tariff_id=row["tariff_id"],
        final_price=money(row["final_minor"], currency),
        status=promo_pb2.PurchaseStatus.Value(f"PURCHASE_STATUS_{row['status']}"),
        created_at=stamp(row["created_at"]),
        user_id=str(row["user_id"]),
        base_price=money(row["base_minor"], currency),
        discount=money(row["discount_minor"], currency),
        request_id=row["request_id"] or "",
        updated_at=stamp(row["updated_at"]),
        schedule=price_schedule(
            schedule(
                Duration(row["duration"]),
                row["duration_periods"],
                row["base_minor"],
                row["final_minor"],
            ),
            currency,
        ),
    )


def group(row: asyncpg.Record) -> promo_pb2.Group:
    return promo_pb2.Group(
        group_id=str(row["group_id"]),
        name=row["name"],
        member_count=row["member_count"],
        created_at=stamp(row["created_at"]),
    )


def rejection(row: asyncpg.Record) -> promo_pb2.Rejection:
    return promo_pb2.Rejection(
        rejection_id=str(row["rejection_id"]),
        occurred_at=stamp(row["occurred_at"]),
        user_id=str(row["user_id"]) if row["user_id"] else "",
        code=row["code"],
        tariff_id=row["tariff_id"],
        reason=row["reason"],
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
    code = to_code(value.code)
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
