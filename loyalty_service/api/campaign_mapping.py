"""Campaigns between protobuf and the domain."""

from __future__ import annotations

from common.errors import InvalidArgument
from common.rpc.proto_time import timestamp as stamp
from loyalty_service.api import mapping
from loyalty_service.domain.campaigns import (
    AuditEntry,
    Campaign,
    CampaignInput,
    CampaignReport,
    CampaignStatus,
)
from loyalty_service.domain.codes import PromoCode
from loyalty_service.domain.pricing import Discount, DiscountKind
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.specs import MoneyInput, discount_of
from protogen.loyalty.promo.v1 import promo_pb2


def campaign_input(message: promo_pb2.CampaignSpec) -> CampaignInput:
    budget = message.budget if message.HasField("budget") else None
    return CampaignInput(
        name=message.name,
        rules=mapping.code_spec(message.rules),
        max_uses=message.max_uses,
        budget=None if budget is None else MoneyInput(budget.amount_minor, budget.currency),
        description=message.description,
    )


def status_name(value: int) -> str:
    """'' for UNSPECIFIED (any status), else ACTIVE, PAUSED or ENDED."""
    if value == 0:
        return ""
    if value not in promo_pb2.CampaignStatus.values():
        raise InvalidArgument.of("status", "unknown campaign status")
    name = promo_pb2.CampaignStatus.Name(promo_pb2.CampaignStatus.ValueType(value))
    return name.removeprefix("CAMPAIGN_STATUS_")


def _status(value: CampaignStatus) -> promo_pb2.CampaignStatus.ValueType:
    return promo_pb2.CampaignStatus.Value(f"CAMPAIGN_STATUS_{value.value}")


def _rules(value: Campaign) -> promo_pb2.PromoCodeSpec:
    """The rules as a code of the campaign carries them (shown with the same spec message)."""
    rules = value.rules
    discount = discount_of(rules) if _has_discount(value) else Discount(DiscountKind.AMOUNT_OFF, 0)
    code = PromoCode(
        code="",
        discount=discount,
        currency="RUB",
        starts_at=rules.starts_at,
        ends_at=rules.ends_at,
        max_uses=0,
        uses=0,
        per_user_limit=rules.per_user_limit,
        tariff_ids=rules.tariff_ids,
        all_users=rules.all_users,
        deactivated=False,
        duration=rules.duration,
        duration_periods=rules.duration_periods,
        max_discount=None if rules.max_discount is None else rules.max_discount.amount_minor,
        first_purchase_only=rules.first_purchase_only,
        min_price=None if rules.min_price is None else rules.min_price.amount_minor,
        description=rules.description,
        user_ids=rules.user_ids,
        group_ids=rules.group_ids,
    )
    return mapping.promo_code(code).spec


def _has_discount(value: Campaign) -> bool:
    rules = value.rules
    return any(d is not None for d in (rules.fixed_price, rules.percent_off, rules.amount_off))


def campaign(value: Campaign) -> promo_pb2.Campaign:
    return promo_pb2.Campaign(
        campaign_id=value.campaign_id,
        name=value.name,
        status=_status(value.status),
        description=value.description,
        rules=_rules(value),
        max_uses=value.max_uses,
        budget=None if value.budget is None else mapping.money(value.budget),
        uses_taken=value.uses_taken,
        uses_left=value.uses_left,
        budget_spent=mapping.money(value.budget_spent),
        code_count=value.code_count,
        kind=value.kind.value,
        created_by=value.created_by,
        created_at=stamp(value.created_at),
        updated_at=stamp(value.updated_at),
    )


def report(value: CampaignReport) -> promo_pb2.CampaignReport:
    found = value.campaign
    return promo_pb2.CampaignReport(
        campaign=campaign(found),
        uses=value.uses,
        confirms=value.confirms,
        cancels=value.cancels,
        refunds=value.refunds,
        discount_granted=mapping.money(value.discount_granted),
        budget=None if found.budget is None else mapping.money(found.budget),
        budget_spent=mapping.money(found.budget_spent),
        budget_left=None if found.budget_left is None else mapping.money(found.budget_left),
        purchases_by_status=value.purchases_by_status,
        rejections_by_reason=value.rejections_by_reason,
        daily=[_day(d, value) for d in value.daily],
        **{"from": value.first_day.isoformat(), "to": value.last_day.isoformat()},
    )


def _day(found: DayStats, value: CampaignReport) -> promo_pb2.DailyStats:
    message = mapping.day(found, "RUB")
    message.refunds = value.refunds_by_day.get(found.date, 0)
    return message


def audit_entry(value: AuditEntry) -> promo_pb2.CampaignAuditEntry:
    return promo_pb2.CampaignAuditEntry(
        action=value.action,
        code=value.code,
        detail=value.detail,
        actor_id=value.actor_id,
        at=stamp(value.at),
    )
