"""The campaign use cases: create, list, pause, resume, end, add codes, report, audit, and a
code's deactivation and reactivation (recorded in its campaign's audit)."""

from __future__ import annotations

import uuid
from datetime import datetime

from common.errors import ErrorKind, FieldViolation, InvalidArgument, ServiceError
from loyalty_service.domain import campaigns as rules
from loyalty_service.domain.campaigns import (
    AuditEntry,
    Campaign,
    CampaignInput,
    CampaignKind,
    CampaignReport,
    CampaignStatus,
    CodeSpaceExhausted,
)
from loyalty_service.domain.codes import PromoCode, normalize_code, random_code
from loyalty_service.domain.reasons import DOMAIN, Reason, Rejection
from loyalty_service.use_cases.ports import CampaignsRepository, UnitOfWork

MAX_GENERATION_ROUNDS = 20


def _code_space_exhausted() -> ServiceError:
    return ServiceError(
        ErrorKind.FAILED_PRECONDITION,
        "CODE_SPACE_EXHAUSTED",
        "too many collisions: use a longer random part or another prefix",
        DOMAIN,
    )


def _not_changeable(campaign: Campaign) -> ServiceError:
    return ServiceError(
        ErrorKind.FAILED_PRECONDITION,
        "CAMPAIGN_NOT_CHANGEABLE",
        "a personal referral code's campaign is run by the referral program",
        DOMAIN,
    )


class Campaigns:
    def __init__(self, campaigns: CampaignsRepository, store: UnitOfWork) -> None:
        self._campaigns = campaigns
        self._store = store

    async def create(self, campaign: CampaignInput, actor: str) -> Campaign:
        rules.check_campaign(campaign)
        await self._check_references(campaign)
        campaign_id = str(uuid.uuid4())
        slots = rules.slot_split(
            campaign.max_uses, None if campaign.budget is None else campaign.budget.amount_minor
        )
        await self._campaigns.create(campaign_id, campaign, slots, actor)
        return await self.get(campaign_id)

    async def _check_references(self, campaign: CampaignInput) -> None:
        spec = campaign.rules
        missing = [
            FieldViolation(f"rules.tariff_ids[{spec.tariff_ids.index(t)}]", "does not exist")
            for t in await self._store.single.tariffs.missing_ids(list(spec.tariff_ids))
        ] + [
            FieldViolation(f"rules.group_ids[{spec.group_ids.index(g)}]", "does not exist")
            for g in await self._store.single.groups.missing_ids(list(spec.group_ids))
        ]
        if missing:
            raise InvalidArgument(missing)

    async def get(self, campaign_id: str) -> Campaign:
        found = await self._campaigns.get(campaign_id)
        if found is None:
            raise rules.not_found(campaign_id)
        return found

    async def page(
        self,
        query: str,
        status: str,
        created_from: datetime | None,
        created_to: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Campaign]:
        return await self._campaigns.page(
            query.strip(), status, created_from, created_to, after, limit
        )

    async def change_status(self, campaign_id: str, wanted: CampaignStatus, actor: str) -> Campaign:
        """Pause, resume or end: recorded with who and when; asking for the status it has
        already changes nothing. A use racing the change sees the old status or the new."""
        campaign = await self.get(campaign_id)
        if campaign.kind is CampaignKind.REFERRAL:
            raise _not_changeable(campaign)
        target = rules.next_status(campaign, wanted)
        if target is not None:
            await self._campaigns.set_status(campaign_id, campaign.status, target, actor)
        return await self.get(campaign_id)

    async def add_codes(self, campaign_id: str, new: rules.NewCodes, actor: str) -> list[str]:
        """Named codes (all or none: an existing one is PROMO_CODE_EXISTS) or a batch of
        generated ones, each with the campaign's rules and its own use limit."""
        campaign = await self.get(campaign_id)
        if campaign.kind is CampaignKind.REFERRAL:
            raise _not_changeable(campaign)
        if campaign.status is CampaignStatus.ENDED:
            rules.next_status(campaign, CampaignStatus.ACTIVE)  # CAMPAIGN_ENDED
        if new.generated:
            return await self._generate(campaign_id, new, actor)
        try:
            named = list(new.named)
            return await self._campaigns.add_codes(
                campaign_id, lambda _: named, len(named), new.max_uses_per_code, actor, 1
            )
        except CodeSpaceExhausted:
            raise Rejection(Reason.PROMO_CODE_EXISTS) from None

    async def _generate(self, campaign_id: str, new: rules.NewCodes, actor: str) -> list[str]:
        def make(wanted: int) -> list[str]:
            return list({random_code(new.prefix, new.length) for _ in range(wanted)})

        try:
            return await self._campaigns.add_codes(
                campaign_id, make, new.count, new.max_uses_per_code, actor, MAX_GENERATION_ROUNDS
            )
        except CodeSpaceExhausted:
            raise _code_space_exhausted() from None

    async def codes(self, campaign_id: str, after: str | None, limit: int) -> list[PromoCode]:
        await self.get(campaign_id)
        return await self._campaigns.codes(campaign_id, after, limit)

    async def report(self, campaign_id: str, first: str, last: str) -> CampaignReport:
        start, end = rules.report_range(first, last)
        return await self._campaigns.report(await self.get(campaign_id), start, end)

    async def audit(self, campaign_id: str, after: int | None, limit: int) -> list[AuditEntry]:
        await self.get(campaign_id)
        return await self._campaigns.audit(campaign_id, after, limit)

    async def set_code_active(self, code: str, active: bool, actor: str) -> Campaign:
        """Deactivates or reactivates one code (undoing a deactivation made by mistake); an
        ended campaign's codes stay ended."""
        code = normalize_code(code)
        campaign = await self._campaigns.campaign_of(code)
        if campaign is None:
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        if active and campaign.status is CampaignStatus.ENDED:
            rules.next_status(campaign, CampaignStatus.ACTIVE)
        if not await self._campaigns.set_code_active(code, active, actor):
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        return campaign
