"""PromoService: what any signed-in user can do."""

from __future__ import annotations

from typing import Any

from common.access.access_tokens import Identity, Principal, TokenVerifier, bearer_token
from common.access.client_address import PEER_ONLY, AddressRule, voucher
from common.access.people import person_of
from common.rpc import call_metadata, pagination
from common.rpc.page_tokens import PageTokens
from common.rpc.validation import page_size, uuid_field
from loyalty_service.api import mapping, referral_mapping, requests
from loyalty_service.api.privacy_mapping import my_data_message
from loyalty_service.domain.reasons import DOMAIN
from loyalty_service.use_cases.guessing import Guesser
from loyalty_service.use_cases.privacy import Privacy
from loyalty_service.use_cases.promotions import Promotions
from loyalty_service.use_cases.referrals import Referrals
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

Context = Any


class PromoServicer(promo_pb2_grpc.PromoServiceServicer):
    def __init__(
        self,
        promotions: Promotions,
        verifier: TokenVerifier,
        page_tokens: PageTokens,
        addresses: AddressRule = PEER_ONLY,
        *,
        referrals: Referrals,
        privacy: Privacy,
    ) -> None:
        self._privacy = privacy
        self._promotions = promotions
        self._verifier = verifier
        self._tokens = page_tokens
        self._addresses = addresses
        self._referrals = referrals

    async def _guesser(self, caller: Identity, context: Context) -> Guesser:
        """The caller and its address, as common/access/client_address.py believes it."""
        metadata = call_metadata.of(context)
        vouching = await voucher(metadata, self._verifier.verify_identity, caller)
        address = self._addresses.client_address(metadata, context.peer(), vouching)
        return Guesser(caller.subject, address)

    async def _caller(self, context: Context) -> Identity:
        """Any signed-in caller, a person or a service account (settlement, tariffs)."""
        return await self._verifier.verify_identity(bearer_token(call_metadata.of(context)))

    async def _user(self, context: Context) -> Principal:
        """A person: the methods about "my" codes and purchases refuse service accounts."""
        return await self._verifier.verify(bearer_token(call_metadata.of(context)))

    async def ListTariffs(
        self, request: promo_pb2.ListTariffsRequest, context: Context
    ) -> promo_pb2.ListTariffsResponse:
        await self._caller(context)
        found = await self._promotions.tariffs()
        return promo_pb2.ListTariffsResponse(tariffs=[mapping.tariff(t) for t in found])

    async def ListActivePromoCodes(
        self, request: promo_pb2.ListActivePromoCodesRequest, context: Context
    ) -> promo_pb2.ListActivePromoCodesResponse:
        caller = await self._user(context)
        size = page_size(request.page_size)
        after = requests.ends_cursor(self._tokens, "active_codes", request.page_token)
        rows = await self._promotions.active_codes(caller.user_id, after, size + 1)
        token = pagination.next_token(
            self._tokens, "active_codes", rows, size, requests.ends_position
        )
        return promo_pb2.ListActivePromoCodesResponse(
            promo_codes=[mapping.active_code(r) for r in rows[:size]], next_page_token=token
        )

    async def ApplyPromoCode(
        self, request: promo_pb2.ApplyPromoCodeRequest, context: Context
    ) -> promo_pb2.Quote:
        caller = await self._user(context)
        code, tariff_id = requests.code_and_tariff(request.code, request.tariff_id)
        guesser = await self._guesser(caller, context)
        return mapping.quote(await self._promotions.quote(caller.user_id, code, tariff_id, guesser))

    async def UsePromoCode(
        self, request: promo_pb2.UsePromoCodeRequest, context: Context
    ) -> promo_pb2.Purchase:
        caller = await self._user(context)
        code, tariff_id = requests.code_and_tariff(request.code, request.tariff_id)
        guesser = await self._guesser(caller, context)
        request_id = request.request_id.strip()
        row = await self._promotions.redeem(
            caller.user_id, code, tariff_id, request_id or None, guesser
        )
        return mapping.purchase(row)

    async def ConfirmPurchase(
        self, request: promo_pb2.ConfirmPurchaseRequest, context: Context
    ) -> promo_pb2.Purchase:
        caller = await self._caller(context)
        purchase_id = uuid_field(request.purchase_id, "purchase_id")
        return mapping.purchase(await self._promotions.confirm(caller, purchase_id))

    async def RefundPurchase(
        self, request: promo_pb2.RefundPurchaseRequest, context: Context
    ) -> promo_pb2.Purchase:
        caller = await self._caller(context)
        purchase_id = uuid_field(request.purchase_id, "purchase_id")
        reason = request.reason.strip()  # its length is the proto rule's
        return mapping.purchase(await self._promotions.refund(caller, purchase_id, reason))

    async def CancelPromoCodeUse(
        self, request: promo_pb2.CancelPromoCodeUseRequest, context: Context
    ) -> promo_pb2.Purchase:
        caller = await self._caller(context)
        purchase_id = uuid_field(request.purchase_id, "purchase_id")
        return mapping.purchase(await self._promotions.cancel(caller, purchase_id))

    async def ListMyPurchases(
        self, request: promo_pb2.ListMyPurchasesRequest, context: Context
    ) -> promo_pb2.ListPurchasesResponse:
        caller = await self._user(context)
        size = page_size(request.page_size)
        after = pagination.time_cursor(self._tokens, "purchases", request.page_token)
        rows = await self._promotions.purchases_of(caller.user_id, after, size + 1)
        token = pagination.next_token(
            self._tokens,
            "purchases",
            rows,
            size,
            lambda p: pagination.time_position(p.created_at, p.purchase_id),
        )
        return promo_pb2.ListPurchasesResponse(
            purchases=[mapping.purchase(r) for r in rows[:size]], next_page_token=token
        )

    async def GetMyReferralCode(
        self, request: promo_pb2.GetMyReferralCodeRequest, context: Context
    ) -> promo_pb2.ReferralCode:
        caller = await self._user(context)
        address = (await self._guesser(caller, context)).address
        found = await self._referrals.personal_code(caller.user_id, address)
        return referral_mapping.personal_code(found)

    async def ExportMyData(
        self, request: promo_pb2.ExportMyDataRequest, context: Context
    ) -> promo_pb2.MyData:
        caller = await self._user(context)
        return my_data_message(await self._privacy.my_data(person_of(caller, DOMAIN)))
