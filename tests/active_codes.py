"""Every page of a user's active codes. The integration tests share one database, where every
test's codes for everyone stay active, so one page of a fixed size can miss a code made just
now once enough others are there (a race stopped partway by a failure leaves thousands)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from protogen.loyalty.promo.v1 import promo_pb2
from tests.fixtures.auth import TestUser


async def all_active(
    promo_stub: Any, user: TestUser, page_size: int = 1000, max_pages: int | None = None
) -> list[promo_pb2.ActivePromoCode]:
    """Every page over gRPC, or the first `max_pages` of them."""
    found: list[promo_pb2.ActivePromoCode] = []
    token = ""
    for _ in itertools.count() if max_pages is None else range(max_pages):
        answer = await promo_stub.ListActivePromoCodes(
            promo_pb2.ListActivePromoCodesRequest(page_size=page_size, page_token=token),
            metadata=user.metadata(),
        )
        assert len(answer.promo_codes) <= page_size
        found += answer.promo_codes
        token = answer.next_page_token
        if not token:
            return found
    return found


async def all_active_http(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every page through the gateway, as the JSON objects it answers."""
    found: list[dict[str, Any]] = []
    params = {"pageSize": "1000"}
    while True:
        response = await http.get("/v1/promocodes/active", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page.get("promoCodes", [])
        if not page.get("nextPageToken"):
            return found
        params["pageToken"] = page["nextPageToken"]
