"""PromoAdminService: codes, audiences, groups, bulk apply and reports (role admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.api import httpbody_pb2

from common.access.access_tokens import Principal, TokenVerifier, bearer_token
from common.rpc import call_metadata, pagination
from common.rpc.audit_api import AuditReader, list_audit_events
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.validation import page_size, uuid_field
from loyalty_service.api import mapping, referral_mapping, requests
from loyalty_service.api.campaigns import CampaignMethods
from loyalty_service.domain.referrals import ReferralReward
from loyalty_service.use_cases.administration import PromoAdmin
from loyalty_service.use_cases.campaigns import Campaigns
from loyalty_service.use_cases.code_transfer import CodeTransfer
from loyalty_service.use_cases.referrals import Referrals
from protogen.loyalty.audit.v1 import audit_pb2
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

Context = Any
CSV = "text/csv; charset=utf-8"


class PromoAdminServicer(CampaignMethods, promo_pb2_grpc.PromoAdminServiceServicer):
    def __init__(
        self,
        admin: PromoAdmin,
        verifier: TokenVerifier,
        page_tokens: PageTokens,
        transfer: CodeTransfer,
        *,
        referrals: Referrals,
        audit: AuditReader,
        campaigns: Campaigns,
    ) -> None:
        self._campaigns = campaigns
        self._audit = audit
        self._admin = admin
        self._verifier = verifier
        self._tokens = page_tokens
        self._transfer = transfer
        self._referrals = referrals

    async def _check(self, context: Context) -> None:
        await self._admin_caller(context)

    async def _admin_caller(self, context: Context) -> Principal:
        return await self._verifier.verify_admin(bearer_token(call_metadata.of(context)))

    async def CreatePromoCode(
        self, request: promo_pb2.PromoCodeSpec, context: Context
    ) -> promo_pb2.PromoCode:
        await self._check(context)
        return mapping.promo_code(await self._admin.create(mapping.code_spec(request)))

    async def GeneratePromoCodes(
        self, request: promo_pb2.GeneratePromoCodesRequest, context: Context
    ) -> promo_pb2.GeneratePromoCodesResponse:
        await self._check(context)
        spec = mapping.code_spec(request.spec)
        made = await self._admin.generate(spec, request.count, request.prefix, request.length)
        return promo_pb2.GeneratePromoCodesResponse(codes=made)

    async def GetPromoCode(
        self, request: promo_pb2.GetPromoCodeRequest, context: Context
    ) -> promo_pb2.PromoCode:
        await self._check(context)
        return mapping.promo_code(await self._admin.get(request.code))

    async def ListPromoCodes(
        self, request: promo_pb2.ListPromoCodesRequest, context: Context
    ) -> promo_pb2.ListPromoCodesResponse:
        await self._check(context)
        size = page_size(request.page_size)
        status = requests.code_status(request.status)
        after = pagination.text_cursor(self._tokens, "promo_codes", request.page_token)
        rows = await self._admin.list_codes(after, size + 1, request.query, status)
        return promo_pb2.ListPromoCodesResponse(
            promo_codes=[mapping.promo_code(r) for r in rows[:size]],
            next_page_token=pagination.next_token(
                self._tokens, "promo_codes", rows, size, lambda c: (c.code,)
            ),
        )

    async def AssignPromoCode(
        self, request: promo_pb2.AssignPromoCodeRequest, context: Context
    ) -> promo_pb2.PromoCode:
        await self._check(context)
        user_ids = requests.uuids(request.user_ids, "user_ids")
        group_ids = requests.uuids(request.group_ids, "group_ids")
        return mapping.promo_code(await self._admin.assign(request.code, user_ids, group_ids))

    async def CreateGroup(
        self, request: promo_pb2.CreateGroupRequest, context: Context
    ) -> promo_pb2.Group:
        await self._check(context)
        name = request.name.strip()
        return mapping.group(await self._admin.create_group(name))

    async def ListGroups(
        self, request: promo_pb2.ListGroupsRequest, context: Context
    ) -> promo_pb2.ListGroupsResponse:
        await self._check(context)
        size = page_size(request.page_size)
        after = pagination.text_cursor(self._tokens, "groups", request.page_token)
        rows = await self._admin.list_groups(after, size + 1)
        return promo_pb2.ListGroupsResponse(
            groups=[mapping.group(r) for r in rows[:size]],
            next_page_token=pagination.next_token(
                self._tokens, "groups", rows, size, lambda g: (g.name.lower(),)
            ),
        )

    async def ListGroupMembers(
        self, request: promo_pb2.ListGroupMembersRequest, context: Context
    ) -> promo_pb2.ListGroupMembersResponse:
        await self._check(context)
        group_id = uuid_field(request.group_id, "group_id")
        size = page_size(request.page_size)
        list_name = f"group_members:{group_id}"
        after = pagination.uuid_cursor(self._tokens, list_name, request.page_token)
        members = await self._admin.members(group_id, after, size + 1)
        return promo_pb2.ListGroupMembersResponse(
            user_ids=members[:size],
            next_page_token=pagination.next_token(
                self._tokens, list_name, members, size, lambda m: (m,)
            ),
        )

    async def _change_members(
        self, request: promo_pb2.GroupMembersRequest, context: Context, add: bool
    ) -> promo_pb2.Group:
        await self._check(context)
        group_id = uuid_field(request.group_id, "group_id")
        user_ids = requests.uuids(request.user_ids, "user_ids")
        return mapping.group(await self._admin.change_members(group_id, user_ids, add))

    async def AddGroupMembers(
        self, request: promo_pb2.GroupMembersRequest, context: Context
    ) -> promo_pb2.Group:
        return await self._change_members(request, context, add=True)

    async def RemoveGroupMembers(
        self, request: promo_pb2.GroupMembersRequest, context: Context
    ) -> promo_pb2.Group:
        return await self._change_members(request, context, add=False)

    async def AdminApplyPromoCode(
        self, request: promo_pb2.AdminApplyPromoCodeRequest, context: Context
    ) -> promo_pb2.AdminApplyPromoCodeResponse:
        await self._check(context)
        code, tariff_id = requests.code_and_tariff(request.code, request.tariff_id)
        user_ids = requests.uuids(request.user_ids, "user_ids")
        group_ids = requests.uuids(request.group_ids, "group_ids")
        results = await self._admin.apply_for(code, tariff_id, user_ids, group_ids)
        return promo_pb2.AdminApplyPromoCodeResponse(
            results=[
                promo_pb2.AdminApplyResult(user_id=r.user_id, purchase=mapping.purchase(r.purchase))
                if r.purchase is not None
                else promo_pb2.AdminApplyResult(user_id=r.user_id, reason=r.reason)
                for r in results
            ]
        )

    async def GetPromoCodeReport(
        self, request: promo_pb2.GetPromoCodeReportRequest, context: Context
    ) -> promo_pb2.PromoCodeReport:
        await self._check(context)
        report = await self._admin.report(request.code)
        return mapping.report(report)

    async def ExportPromoCodes(
        self, request: promo_pb2.ExportPromoCodesRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        await self._check(context)
        status = requests.code_status(request.status)
        async for chunk in self._transfer.export(request.query, status):
            yield httpbody_pb2.HttpBody(content_type=CSV, data=chunk.encode())

    async def ImportPromoCodes(
        self, request: promo_pb2.ImportPromoCodesRequest, context: Context
    ) -> promo_pb2.ImportPromoCodesResponse:
        await self._check(context)
        results = await self._transfer.import_csv(request.csv)
        return mapping.import_results(results)

    async def ListRejections(
        self, request: promo_pb2.ListRejectionsRequest, context: Context
    ) -> promo_pb2.ListRejectionsResponse:
        await self._check(context)
        size = page_size(request.page_size)
        reason = request.reason.strip()
        before = pagination.int_cursor(self._tokens, "rejections", request.page_token)
        rows = await self._admin.rejections(request.code, reason, before, size + 1)
        return promo_pb2.ListRejectionsResponse(
            rejections=[mapping.rejection(r) for r in rows[:size]],
            next_page_token=pagination.next_token(
                self._tokens, "rejections", rows, size, lambda r: (r.rejection_id,)
            ),
        )

    async def SetReferralProgram(
        self, request: promo_pb2.ReferralProgram, context: Context
    ) -> promo_pb2.ReferralProgram:
        await self._check(context)
        program = referral_mapping.program_input(request)
        return referral_mapping.program(await self._referrals.set_program(program))

    async def GetReferralProgram(
        self, request: promo_pb2.GetReferralProgramRequest, context: Context
    ) -> promo_pb2.ReferralProgram:
        await self._check(context)
        return referral_mapping.program(await self._referrals.program())

    async def GetReferralReport(
        self, request: promo_pb2.GetReferralReportRequest, context: Context
    ) -> promo_pb2.ReferralReport:
        await self._check(context)
        return referral_mapping.report(await self._referrals.report())

    async def ListHeldReferrals(
        self, request: promo_pb2.ListHeldReferralsRequest, context: Context
    ) -> promo_pb2.ListHeldReferralsResponse:
        await self._check(context)
        size = page_size(request.page_size)
        after = pagination.time_cursor(self._tokens, "held_referrals", request.page_token)
        rows = await self._referrals.held(after, size + 1)
        return promo_pb2.ListHeldReferralsResponse(
            referrals=[referral_mapping.referral(r) for r in rows[:size]],
            next_page_token=pagination.next_token(
                self._tokens, "held_referrals", rows, size, _held_position
            ),
        )

    async def ReviewReferral(
        self, request: promo_pb2.ReviewReferralRequest, context: Context
    ) -> promo_pb2.Referral:
        admin = await self._admin_caller(context)
        referral_id = uuid_field(request.referral_id, "referral_id")
        found = await self._referrals.review(admin.user_id, referral_id, request.approve)
        return referral_mapping.referral(found)

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        await self._check(context)
        return await list_audit_events(request, self._audit, self._tokens)


def _held_position(reward: ReferralReward) -> Position:
    assert reward.created_at is not None
    return pagination.time_position(reward.created_at, reward.purchase_id)
