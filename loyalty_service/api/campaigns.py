"""PromoAdminService's campaign methods (mixed into PromoAdminServicer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.api import httpbody_pb2

from common.access.access_tokens import Principal
from common.rpc import pagination
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.proto_time import when
from common.rpc.validation import page_size, uuid_field
from loyalty_service.api import campaign_mapping, mapping
from loyalty_service.domain import campaigns as rules
from loyalty_service.domain import code_csv
from loyalty_service.domain.campaigns import Campaign, CampaignStatus
from loyalty_service.domain.specs import spec_of_code
from loyalty_service.use_cases.administration import PromoAdmin
from loyalty_service.use_cases.campaigns import Campaigns
from protogen.loyalty.promo.v1 import promo_pb2

Context = Any
CSV = "text/csv; charset=utf-8"
EXPORT_BATCH = 500


def _position(value: Campaign) -> Position:
    return pagination.time_position(value.created_at, value.campaign_id)


class CampaignMethods:
    """The campaign RPCs; the servicer provides the use cases and the caller check."""

    _campaigns: Campaigns
    _admin: PromoAdmin
    _tokens: PageTokens

    async def _admin_caller(self, context: Context) -> Principal:
        raise NotImplementedError

    async def CreateCampaign(
        self, request: promo_pb2.CampaignSpec, context: Context
    ) -> promo_pb2.Campaign:
        admin = await self._admin_caller(context)
        made = await self._campaigns.create(campaign_mapping.campaign_input(request), admin.user_id)
        return campaign_mapping.campaign(made)

    async def GetCampaign(
        self, request: promo_pb2.GetCampaignRequest, context: Context
    ) -> promo_pb2.Campaign:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        return campaign_mapping.campaign(await self._campaigns.get(campaign_id))

    async def ListCampaigns(
        self, request: promo_pb2.ListCampaignsRequest, context: Context
    ) -> promo_pb2.ListCampaignsResponse:
        await self._admin_caller(context)
        size = page_size(request.page_size)
        after = pagination.time_cursor(self._tokens, "campaigns", request.page_token)
        found = await self._campaigns.page(
            request.query,
            campaign_mapping.status_name(request.status),
            when(request, "created_from"),
            when(request, "created_to"),
            after,
            size + 1,
        )
        return promo_pb2.ListCampaignsResponse(
            campaigns=[campaign_mapping.campaign(c) for c in found[:size]],
            next_page_token=pagination.next_token(
                self._tokens, "campaigns", found, size, _position
            ),
        )

    async def _change(
        self, request: promo_pb2.CampaignRequest, context: Context, wanted: CampaignStatus
    ) -> promo_pb2.Campaign:
        admin = await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        changed = await self._campaigns.change_status(campaign_id, wanted, admin.user_id)
        return campaign_mapping.campaign(changed)

    async def PauseCampaign(
        self, request: promo_pb2.CampaignRequest, context: Context
    ) -> promo_pb2.Campaign:
        return await self._change(request, context, CampaignStatus.PAUSED)

    async def ResumeCampaign(
        self, request: promo_pb2.CampaignRequest, context: Context
    ) -> promo_pb2.Campaign:
        return await self._change(request, context, CampaignStatus.ACTIVE)

    async def EndCampaign(
        self, request: promo_pb2.CampaignRequest, context: Context
    ) -> promo_pb2.Campaign:
        return await self._change(request, context, CampaignStatus.ENDED)

    async def AddCampaignCodes(
        self, request: promo_pb2.AddCampaignCodesRequest, context: Context
    ) -> promo_pb2.AddCampaignCodesResponse:
        admin = await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        generate = request.generate
        new = rules.check_new_codes(
            list(request.codes),
            generate.count,
            generate.prefix,
            generate.length,
            request.max_uses_per_code,
        )
        made = await self._campaigns.add_codes(campaign_id, new, admin.user_id)
        return promo_pb2.AddCampaignCodesResponse(codes=made)

    async def ListCampaignCodes(
        self, request: promo_pb2.ListCampaignCodesRequest, context: Context
    ) -> promo_pb2.ListPromoCodesResponse:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        size = page_size(request.page_size)
        list_name = f"campaign_codes:{campaign_id}"
        after = pagination.text_cursor(self._tokens, list_name, request.page_token)
        found = await self._campaigns.codes(campaign_id, after, size + 1)
        return promo_pb2.ListPromoCodesResponse(
            promo_codes=[mapping.promo_code(c) for c in found[:size]],
            next_page_token=pagination.next_token(
                self._tokens, list_name, found, size, lambda c: (c.code,)
            ),
        )

    async def ExportCampaignCodes(
        self, request: promo_pb2.CampaignRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        await self._campaigns.get(campaign_id)
        yield httpbody_pb2.HttpBody(content_type=CSV, data=code_csv.header().encode())
        after: str | None = None
        while found := await self._campaigns.codes(campaign_id, after, EXPORT_BATCH):
            chunk = code_csv.rows(spec_of_code(c) for c in found)
            yield httpbody_pb2.HttpBody(content_type=CSV, data=chunk.encode())
            after = found[-1].code

    async def GetCampaignReport(
        self, request: promo_pb2.GetCampaignReportRequest, context: Context
    ) -> promo_pb2.CampaignReport:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        found = await self._campaigns.report(campaign_id, getattr(request, "from"), request.to)
        return campaign_mapping.report(found)

    async def ExportCampaignReport(
        self, request: promo_pb2.ExportCampaignReportRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        found = await self._campaigns.report(campaign_id, getattr(request, "from"), request.to)
        yield httpbody_pb2.HttpBody(content_type=CSV, data=code_csv.report_table(found).encode())

    async def ListCampaignAudit(
        self, request: promo_pb2.ListCampaignAuditRequest, context: Context
    ) -> promo_pb2.ListCampaignAuditResponse:
        await self._admin_caller(context)
        campaign_id = uuid_field(request.campaign_id, "campaign_id")
        size = page_size(request.page_size)
        list_name = f"campaign_audit:{campaign_id}"
        after = pagination.int_cursor(self._tokens, list_name, request.page_token)
        found = await self._campaigns.audit(campaign_id, after, size + 1)
        return promo_pb2.ListCampaignAuditResponse(
            entries=[campaign_mapping.audit_entry(e) for e in found[:size]],
            next_page_token=pagination.next_token(
                self._tokens, list_name, found, size, lambda e: (e.audit_id,)
            ),
        )

    async def ReactivatePromoCode(
        self, request: promo_pb2.ReactivatePromoCodeRequest, context: Context
    ) -> promo_pb2.PromoCode:
        admin = await self._admin_caller(context)
        await self._campaigns.set_code_active(request.code, True, admin.user_id)
        return mapping.promo_code(await self._admin.get(request.code))

    async def DeactivatePromoCode(
        self, request: promo_pb2.DeactivatePromoCodeRequest, context: Context
    ) -> promo_pb2.PromoCode:
        """As before, and now recorded in the code's campaign's audit."""
        admin = await self._admin_caller(context)
        await self._campaigns.set_code_active(request.code, False, admin.user_id)
        return mapping.promo_code(await self._admin.get(request.code))
