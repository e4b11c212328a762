"""Who may run a campaign: admins only. A buyer's token and the payment side's service token
(scope purchases:settle) are refused every campaign method, with well-formed requests on a
real campaign, and the campaign is left as it was."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.loyalty import LoyaltyTestServer
from tests.grpc_helpers import rejected


def _calls(campaign_id: str) -> list[tuple[str, Any]]:
    by_id = promo_pb2.CampaignRequest(campaign_id=campaign_id)
    return [
        ("CreateCampaign", promo_pb2.CampaignSpec(name="stolen", rules=_rules())),
        ("GetCampaign", promo_pb2.GetCampaignRequest(campaign_id=campaign_id)),
        ("ListCampaigns", promo_pb2.ListCampaignsRequest()),
        ("PauseCampaign", by_id),
        ("ResumeCampaign", by_id),
        ("EndCampaign", by_id),
        (
            "AddCampaignCodes",
            promo_pb2.AddCampaignCodesRequest(campaign_id=campaign_id, codes=["FREEFORME"]),
        ),
        ("GetCampaignReport", promo_pb2.GetCampaignReportRequest(campaign_id=campaign_id)),
        ("ListCampaignAudit", promo_pb2.ListCampaignAuditRequest(campaign_id=campaign_id)),
        ("ReactivatePromoCode", promo_pb2.ReactivatePromoCodeRequest(code="FREEFORME")),
    ]


def _rules() -> promo_pb2.PromoCodeSpec:
    return promo_pb2.PromoCodeSpec(percent_off=100, all_users=True)


@pytest.mark.parametrize("who", ["buyer", "settler"])
async def test_only_an_admin_runs_a_campaign(
    who: str, loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer, admin: TestUser
) -> None:
    made = await loyalty_server.admin.CreateCampaign(
        promo_pb2.CampaignSpec(name="callers", rules=_rules()), metadata=admin.metadata()
    )
    intruder = (
        auth_server.token_for() if who == "buyer" else auth_server.service_token("purchases:settle")
    )
    for method, request in _calls(made.campaign_id):
        call = getattr(loyalty_server.admin, method)(request, metadata=intruder.metadata())
        await rejected(call, grpc.StatusCode.PERMISSION_DENIED)
    after = await loyalty_server.admin.GetCampaign(
        promo_pb2.GetCampaignRequest(campaign_id=made.campaign_id), metadata=admin.metadata()
    )
    assert after.status == made.status == promo_pb2.CAMPAIGN_STATUS_ACTIVE
