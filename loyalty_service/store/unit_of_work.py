"""Loyalty's unit of work over PostgreSQL: the repositories bound to one connection and its
transaction, or to the pool for single statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from common.user_status import UserStatus
from loyalty_service.domain.codes import ActiveCode, PromoCode
from loyalty_service.domain.eligibility import Attempt, Tariff
from loyalty_service.domain.groups import Group
from loyalty_service.domain.pricing import Discount
from loyalty_service.domain.purchases import Ended, Purchase, PurchaseStatus
from loyalty_service.domain.reasons import RecordedRejection
from loyalty_service.domain.redemption import Decision, UseOutcome
from loyalty_service.domain.referrals import (
    PersonalCode,
    RefereeHistory,
    Referral,
    ReferralProgram,
    ReferralTotals,
)
from loyalty_service.domain.reports import DayStats
from loyalty_service.domain.specs import CodeSpec
from loyalty_service.store import (
    codes,
    groups,
    outbox,
    partitions,
    purchases,
    redemption,
    referrals,
    rejections,
    reports,
    tariffs,
    users,
)
from loyalty_service.store.settlement import PgSettlement
from loyalty_service.use_cases.ports import Repositories


class PgCodes:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def insert(self, code: str, spec: CodeSpec, discount: Discount) -> None:
        await codes.insert(self._conn, code, spec, discount)

    async def insert_batch(self, texts: list[str], spec: CodeSpec, discount: Discount) -> list[str]:
        return await codes.insert_batch(self._conn, texts, spec, discount)

    async def add_audience(
        self, texts: list[str], user_ids: list[str], group_ids: list[str]
    ) -> None:
        await codes.add_audience(self._conn, texts, user_ids, group_ids)

    async def get(self, code: str) -> PromoCode | None:
        return await codes.get(self._conn, code)

    async def page(
        self, after: str | None, limit: int, query: str, status: str, now: datetime
    ) -> list[PromoCode]:
        return await codes.page(self._conn, after, limit, query, status, now)

    async def deactivate(self, code: str) -> bool:
        return await codes.deactivate(self._conn, code)

    async def attempt(self, code: str, tariff_id: str, user_id: str, now: datetime) -> Attempt:
        return await codes.attempt(self._conn, code, tariff_id, user_id, now)

    async def give_back(self, purchase: Purchase) -> None:
        await codes.give_back(self._conn, purchase)

    async def active_for_user(
        self, user_id: str, now: datetime, after: tuple[str, str] | None, limit: int
    ) -> list[ActiveCode]:
        return await codes.active_for_user(self._conn, user_id, now, after, limit)


class PgPurchases:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def by_request(self, user_id: str, request_id: str) -> Purchase | None:
        return await purchases.by_request(self._conn, user_id, request_id)

    async def get(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        return await purchases.get(self._conn, purchase_id, lock=lock)

    async def set_status(self, purchase_id: str, status: PurchaseStatus) -> Purchase:
        return await purchases.set_status(self._conn, purchase_id, status)

    async def expire_stale(
        self, older_than: datetime, limit: int, *, give_back: bool
    ) -> list[Ended]:
        return await purchases.expire_stale(self._conn, older_than, limit, give_back=give_back)

    async def page_for_user(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Purchase]:
        return await purchases.page_for_user(self._conn, user_id, after, limit)

    async def counts_by_status(self, code: str) -> dict[str, int]:
        return await purchases.counts_by_status(self._conn, code)


class PgRejections:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def counts_by_reason(self, code: str) -> dict[str, int]:
        return await rejections.counts_by_reason(self._conn, code)

    async def forget_before(self, cutoff: datetime, batch: int) -> int:
        return await rejections.forget_before(self._conn, cutoff, batch)

    async def drop_months_before(self, cutoff: datetime) -> int:
        return await rejections.drop_months_before(self._conn, cutoff)

    async def page(
        self, code: str, reason: str, before_id: int | None, limit: int
    ) -> list[RecordedRejection]:
        return await rejections.page(self._conn, code, reason, before_id, limit)


class PgUsers:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def status_of(self, user_id: str) -> UserStatus:
        return await users.status_of(self._conn, user_id)


class PgTariffs:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def all_tariffs(self) -> list[Tariff]:
        return await tariffs.all_tariffs(self._conn)

    async def missing_ids(self, tariff_ids: list[str]) -> list[str]:
        return await tariffs.missing_ids(self._conn, tariff_ids)


class PgGroups:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add_members(self, group_id: str, user_ids: list[str]) -> None:
        await groups.add_members(self._conn, group_id, user_ids)

    async def remove_members(self, group_id: str, user_ids: list[str]) -> None:
        await groups.remove_members(self._conn, group_id, user_ids)

    async def create(self, group_id: str, name: str) -> Group:
        return await groups.create(self._conn, group_id, name)

    async def get(self, group_id: str) -> Group | None:
        return await groups.get(self._conn, group_id)

    async def page(self, after_name: str | None, limit: int) -> list[Group]:
        return await groups.page(self._conn, after_name, limit)

    async def members_page(self, group_id: str, after: str | None, limit: int) -> list[str]:
        return await groups.members_page(self._conn, group_id, after, limit)

    async def members_of(self, group_ids: list[str]) -> list[str]:
        return await groups.members_of(self._conn, group_ids)

    async def missing_ids(self, group_ids: list[str]) -> list[str]:
        return await groups.missing_ids(self._conn, group_ids)


class PgReferrals:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def program(self) -> ReferralProgram:
        return await referrals.program(self._conn)

    async def set_program(self, value: ReferralProgram) -> ReferralProgram:
        return await referrals.set_program(self._conn, value)

    async def personal_code(self, user_id: str) -> PersonalCode | None:
        return await referrals.personal_code(self._conn, user_id)

    async def insert_code_row(self, code: str, user_id: str) -> bool:
        return await referrals.insert_code_row(self._conn, code, user_id)

    async def claim_personal_code(self, user_id: str, code: str) -> bool:
        return await referrals.claim_personal_code(self._conn, user_id, code)

    async def referee_history(self, user_id: str) -> RefereeHistory:
        return await referrals.referee_history(self._conn, user_id)

    async def end(self, purchase_id: str, status: str) -> str | None:
        return await referrals.end(self._conn, purchase_id, status)

    async def complete(self, purchase_id: str) -> Referral | None:
        return await referrals.complete(self._conn, purchase_id)

    async def take_reward(self, referrer_id: str, cap: int) -> bool:
        return await referrals.take_reward(self._conn, referrer_id, cap)

    async def record_outcome(
        self, referral: Referral, code: str | None, withheld: str | None
    ) -> None:
        await referrals.record_outcome(self._conn, referral, code, withheld)

    async def totals(self, top: int) -> ReferralTotals:
        return await referrals.totals(self._conn, top)


class PgRedemption:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def apply(self, code: str, tariff_id: str, user_id: str, now: datetime) -> Decision:
        return await redemption.apply(self._conn, code, tariff_id, user_id, now)

    async def use(
        self,
        code: str,
        tariff_id: str,
        user_id: str,
        request_id: str | None,
        purchase_id: str,
        now: datetime,
    ) -> UseOutcome:
        return await redemption.use(
            self._conn, code, tariff_id, user_id, request_id, purchase_id, now
        )


class PgPartitions:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def ensure(self, now: datetime) -> int:
        return await partitions.ensure(self._conn, now)


class PgReports:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def daily(self, code: str, days: int) -> list[DayStats]:
        return await reports.daily(self._conn, code, days)


class PgOutbox:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, event_id: str, routing_key: str, payload: bytes) -> None:
        await outbox.add(self._conn, event_id, routing_key, payload)


def repositories(conn: Any) -> Repositories:
    return Repositories(
        PgCodes(conn),
        PgPurchases(conn),
        PgRejections(conn),
        PgUsers(conn),
        PgTariffs(conn),
        PgGroups(conn),
        PgReferrals(conn),
        PgReports(conn),
        PgOutbox(conn),
        PgRedemption(conn),
        PgPartitions(conn),
        PgSettlement(conn),
    )


class PgUnitOfWork:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._single = repositories(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield repositories(conn)

    @property
    def single(self) -> Repositories:
        return self._single
