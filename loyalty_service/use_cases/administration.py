"""The admin use cases: create and generate codes, audiences, groups, bulk apply, reports."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from common.errors import ErrorKind, FieldViolation, InvalidArgument, ServiceError
from loyalty_service.domain import specs
from loyalty_service.domain.codes import (
    DEFAULT_RANDOM_LENGTH,
    CodeTaken,
    PromoCode,
    normalize_code,
    random_code,
)
from loyalty_service.domain.groups import Group, GroupNameTaken
from loyalty_service.domain.purchases import Purchase
from loyalty_service.domain.reasons import DOMAIN, Reason, RecordedRejection, Rejection
from loyalty_service.domain.reports import MAX_REPORT_DAYS, DayStats
from loyalty_service.use_cases.ports import UnitOfWork
from loyalty_service.use_cases.promotions import Promotions

# Rounds of regenerating codes that collided before a batch gives up.
MAX_GENERATION_ROUNDS = 20
MAX_BULK_USERS = 1000


@dataclass(frozen=True)
class Report:
    code: PromoCode
    purchases_by_status: dict[str, int]
    rejections_by_reason: dict[str, int]
    daily: list[DayStats]


@dataclass(frozen=True)
class ApplyResult:
    user_id: str
    purchase: Purchase | None
    reason: str


def _missing(field: str, ids: list[str], all_ids: tuple[str, ...]) -> list[FieldViolation]:
    return [FieldViolation(f"{field}[{all_ids.index(i)}]", "does not exist") for i in ids]


class PromoAdmin:
    def __init__(self, store: UnitOfWork, promotions: Promotions) -> None:
        self._store = store
        self._promotions = promotions

    async def _check_references(self, spec: specs.CodeSpec) -> None:
        missing = _missing(
            "tariff_ids",
            await self._store.single.tariffs.missing_ids(list(spec.tariff_ids)),
            spec.tariff_ids,
        ) + _missing(
            "group_ids",
            await self._store.single.groups.missing_ids(list(spec.group_ids)),
            spec.group_ids,
        )
        if missing:
            raise InvalidArgument(missing)

    async def create(self, spec: specs.CodeSpec) -> PromoCode:
        return await self._get(await self.add(spec))

    async def add(self, spec: specs.CodeSpec) -> str:
        """Creates the code and its audience in one transaction; returns the code's text."""
        code = specs.check_spec(spec)
        await self._check_references(spec)
        if not code:
            return (await self._insert_batch(spec, 1, "", DEFAULT_RANDOM_LENGTH))[0]
        async with self._store.transaction() as tx:
            try:
                await tx.codes.insert(code, spec, specs.discount_of(spec))
            except CodeTaken:
                raise Rejection(Reason.PROMO_CODE_EXISTS) from None
            await tx.codes.add_audience([code], list(spec.user_ids), list(spec.group_ids))
        return code

    async def generate(
        self, spec: specs.CodeSpec, count: int, prefix: str, length: int
    ) -> list[str]:
        prefix, length = specs.check_batch(spec, count, prefix, length)
        await self._check_references(spec)
        return await self._insert_batch(spec, count, prefix, length)

    async def _insert_batch(
        self, spec: specs.CodeSpec, count: int, prefix: str, length: int
    ) -> list[str]:
        """Unique codes, regenerating any that collide with existing ones."""
        made: list[str] = []
        async with self._store.transaction() as tx:
            for _ in range(MAX_GENERATION_ROUNDS):
                wanted = count - len(made)
                candidates = list({random_code(prefix, length) for _ in range(wanted)})
                made += await tx.codes.insert_batch(candidates, spec, specs.discount_of(spec))
                if len(made) == count:
                    await tx.codes.add_audience(made, list(spec.user_ids), list(spec.group_ids))
                    return made
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            "CODE_SPACE_EXHAUSTED",
            "too many collisions: use a longer random part or another prefix",
            DOMAIN,
        )

    async def _get(self, code: str) -> PromoCode:
        found = await self._store.single.codes.get(normalize_code(code))
        if found is None:
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        return found

    async def get(self, code: str) -> PromoCode:
        return await self._get(code)

    async def list_codes(
        self, after: str | None, limit: int, query: str, status: str
    ) -> list[PromoCode]:
        return await self._store.single.codes.page(
            after, limit, normalize_code(query), status, datetime.now(UTC)
        )

    async def deactivate(self, code: str) -> PromoCode:
        if not await self._store.single.codes.deactivate(normalize_code(code)):
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        return await self._get(code)

    async def assign(self, code: str, user_ids: list[str], group_ids: list[str]) -> PromoCode:
        code = (await self._get(code)).code
        missing = await self._store.single.groups.missing_ids(group_ids)
        if missing:
            raise InvalidArgument(_missing("group_ids", missing, tuple(group_ids)))
        async with self._store.transaction() as tx:
            await tx.codes.add_audience([code], user_ids, group_ids)
        return await self._get(code)

    async def apply_for(
        self, code: str, tariff_id: str, user_ids: list[str], group_ids: list[str]
    ) -> list[ApplyResult]:
        """Redeems the code for each user in turn; partial success is a normal outcome."""
        everyone = list(dict.fromkeys(user_ids + await self._members(group_ids)))
        if len(everyone) > MAX_BULK_USERS:
            raise InvalidArgument.of("user_ids", f"at most {MAX_BULK_USERS} users at once")
        return [await self._apply_one(code, tariff_id, user_id) for user_id in everyone]

    async def _members(self, group_ids: list[str]) -> list[str]:
        missing = await self._store.single.groups.missing_ids(group_ids)
        if missing:
            raise InvalidArgument(_missing("group_ids", missing, tuple(group_ids)))
        return await self._store.single.groups.members_of(group_ids)

    async def _apply_one(self, code: str, tariff_id: str, user_id: str) -> ApplyResult:
        try:
            purchase = await self._promotions.redeem(user_id, code, tariff_id, None)
        except Rejection as rejection:
            return ApplyResult(user_id, None, rejection.reason)
        return ApplyResult(user_id, purchase, "")

    async def report(self, code: str) -> Report:
        found = await self._get(code)
        return Report(
            found,
            await self._store.single.purchases.counts_by_status(found.code),
            await self._store.single.rejections.counts_by_reason(found.code),
            await self._store.single.reports.daily(found.code, MAX_REPORT_DAYS),
        )

    async def rejections(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]:
        return await self._store.single.rejections.page(
            normalize_code(code), reason, before_id, limit
        )

    async def create_group(self, name: str) -> Group:
        async with self._store.transaction() as tx:
            try:
                return await tx.groups.create(str(uuid.uuid4()), name)
            except GroupNameTaken:
                raise Rejection(Reason.GROUP_EXISTS) from None

    async def group(self, group_id: str) -> Group:
        found = await self._store.single.groups.get(group_id)
        if found is None:
            raise Rejection(Reason.GROUP_NOT_FOUND)
        return found

    async def change_members(self, group_id: str, user_ids: list[str], add: bool) -> Group:
        await self.group(group_id)
        groups = self._store.single.groups
        change = groups.add_members if add else groups.remove_members
        await change(group_id, user_ids)
        return await self.group(group_id)

    async def list_groups(self, after: str | None, limit: int) -> list[Group]:
        return await self._store.single.groups.page(after, limit)

    async def members(self, group_id: str, after: str | None, limit: int) -> list[str]:
        await self.group(group_id)
        return await self._store.single.groups.members_page(group_id, after, limit)
