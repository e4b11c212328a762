"""The user's own data, on request: what loyalty holds about them (docs/privacy.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from loyalty_service.domain.privacy import MyReferral, MyReward
from loyalty_service.domain.purchases import Purchase
from loyalty_service.domain.reasons import RecordedRejection
from loyalty_service.use_cases.promotions import Promotions

# Each list of an export holds at most this many items, newest first.
EXPORT_LIMIT = 10_000


class PersonalDataRepository(Protocol):
    async def referral_code_of(self, user_id: str) -> str: ...

    async def referrals_of(self, user_id: str, limit: int) -> list[MyReferral]: ...

    async def rewards_of(self, user_id: str, limit: int) -> list[MyReward]: ...

    async def rejections_of(self, user_id: str, limit: int) -> list[RecordedRejection]: ...


@dataclass(frozen=True)
class MyData:
    user_id: str
    purchases: list[Purchase]
    referral_code: str
    referrals: list[MyReferral]
    rewards: list[MyReward]
    rejections: list[RecordedRejection]


class Privacy:
    def __init__(self, personal_data: PersonalDataRepository, promotions: Promotions) -> None:
        self._data = personal_data
        self._promotions = promotions

    async def my_data(self, user_id: str) -> MyData:
        data = self._data
        return MyData(
            user_id,
            await self._promotions.purchases_of(user_id, None, EXPORT_LIMIT),
            await data.referral_code_of(user_id),
            await data.referrals_of(user_id, EXPORT_LIMIT),
            await data.rewards_of(user_id, EXPORT_LIMIT),
            await data.rejections_of(user_id, EXPORT_LIMIT),
        )
