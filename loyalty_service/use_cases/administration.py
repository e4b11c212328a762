"""The admin use cases: create and generate codes, audiences, groups, bulk apply, reports."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from common.db import Pool
from common.errors import ErrorKind, FieldViolation, InvalidArgument, ServiceError
from loyalty_service.domain import specs
from loyalty_service.domain.codes import (
    DEFAULT_RANDOM_LENGTH,
    PromoCode,
    normalize_code,
    random_code,
)
from loyalty_service.domain.groups import Group
from loyalty_service.domain.purchases import Purchase
from loyalty_service.domain.reasons import DOMAIN, Reason, RecordedRejection, Rejection
from loyalty_service.domain.reports import MAX_REPORT_DAYS, DayStats
from loyalty_service.store import codes, groups, purchases, rejections, reports, tariffs
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
    def __init__(self, pool: Pool, promotions: Promotions) -> None:
        self._pool = pool
        self._promotions = promotions

    async def _check_references(self, spec: specs.CodeSpec) -> None:
        missing = _missing(
            "tariff_ids",
            await tariffs.missing_ids(self._pool, list(spec.tariff_ids)),
            spec.tariff_ids,
        ) + _missing(
            "group_ids", await groups.missing_ids(self._pool, list(spec.group_ids)), spec.group_ids
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
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await codes.insert(conn, code, spec, specs.discount_of(spec))
            except codes.CodeTaken:
                raise Rejection(Reason.PROMO_CODE_EXISTS) from None
            await codes.add_audience(conn, [code], list(spec.user_ids), list(spec.group_ids))
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
        async with self._pool.acquire() as conn, conn.transaction():
            for _ in range(MAX_GENERATION_ROUNDS):
                wanted = count - len(made)
                candidates = list({random_code(prefix, length) for _ in range(wanted)})
                made += await codes.insert_batch(conn, candidates, spec, specs.discount_of(spec))
                if len(made) == count:
                    await codes.add_audience(conn, made, list(spec.user_ids), list(spec.group_ids))
                    return made
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            "CODE_SPACE_EXHAUSTED",
            "too many collisions: use a longer random part or another prefix",
            DOMAIN,
        )

    async def _get(self, code: str) -> PromoCode:
        found = await codes.get(self._pool, normalize_code(code))
        if found is None:
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        return found

    async def get(self, code: str) -> PromoCode:
        return await self._get(code)

    async def list_codes(
        self, after: str | None, limit: int, query: str, status: str
    ) -> list[PromoCode]:
        return await codes.page(
            self._pool, after, limit, normalize_code(query), status, datetime.now(UTC)
        )

    async def deactivate(self, code: str) -> PromoCode:
        if not await codes.deactivate(self._pool, normalize_code(code)):
            raise Rejection(Reason.PROMO_CODE_NOT_FOUND)
        return await self._get(code)

    async def assign(self, code: str, user_ids: list[str], group_ids: list[str]) -> PromoCode:
        code = (await self._get(code)).code
        missing = await groups.missing_ids(self._pool, group_ids)
        if missing:
            raise InvalidArgument(_missing("group_ids", missing, tuple(group_ids)))
        async with self._pool.acquire() as conn, conn.transaction():
            await codes.add_audience(conn, [code], user_ids, group_ids)
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
        missing = await groups.missing_ids(self._pool, group_ids)
        if missing:
            raise InvalidArgument(_missing("group_ids", missing, tuple(group_ids)))
        return await groups.members_of(self._pool, group_ids)

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
            await purchases.counts_by_status(self._pool, found.code),
            await rejections.counts_by_reason(self._pool, found.code),
            await reports.daily(self._pool, found.code, MAX_REPORT_DAYS),
        )

    async def rejections(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]:
        return await rejections.page(self._pool, normalize_code(code), reason, before_id, limit)

    async def create_group(self, name: str) -> Group:
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                return await groups.create(conn, str(uuid.uuid4()), name)
            except groups.GroupNameTaken:
                raise Rejection(Reason.GROUP_EXISTS) from None

    async def group(self, group_id: str) -> Group:
        found = await groups.get(self._pool, group_id)
        if found is None:
            raise Rejection(Reason.GROUP_NOT_FOUND)
        return found

    async def change_members(self, group_id: str, user_ids: list[str], add: bool) -> Group:
        await self.group(group_id)
        change = groups.add_members if add else groups.remove_members
        await change(self._pool, group_id, user_ids)
        return await self.group(group_id)

    async def list_groups(self, after: str | None, limit: int) -> list[Group]:
        return await groups.page(self._pool, after, limit)

    async def members(self, group_id: str, after: str | None, limit: int) -> list[str]:
        await self.group(group_id)
        return await groups.members_page(self._pool, group_id, after, limit)
