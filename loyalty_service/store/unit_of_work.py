"""Loyalty's unit of work over PostgreSQL: it only hands out the store's repositories, bound
to one connection and its transaction, or to the pool for single statements. Each repository
satisfies its port (use_cases/ports.py) itself, so a use case's call reaches the SQL in one
hop; building `Repositories` here is where mypy checks that they do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from common.storage.db import transaction
from loyalty_service.store.codes import PgCodes
from loyalty_service.store.groups import PgGroups
from loyalty_service.store.outbox import PgOutbox
from loyalty_service.store.partitions import PgPartitions
from loyalty_service.store.purchases import PgPurchases
from loyalty_service.store.redemption import PgRedemption
from loyalty_service.store.referral_rewards import PgReferralRewards
from loyalty_service.store.referrals import PgReferrals
from loyalty_service.store.rejections import PgRejections
from loyalty_service.store.reports import PgReports
from loyalty_service.store.settlement import PgSettlement
from loyalty_service.store.tariffs import PgTariffs
from loyalty_service.store.users import PgUsers
from loyalty_service.use_cases.ports import Repositories


def repositories(conn: Any) -> Repositories:
    return Repositories(
        codes=PgCodes(conn),
        purchases=PgPurchases(conn),
        rejections=PgRejections(conn),
        users=PgUsers(conn),
        tariffs=PgTariffs(conn),
        groups=PgGroups(conn),
        referrals=PgReferrals(conn),
        reports=PgReports(conn),
        outbox=PgOutbox(conn),
        redemption=PgRedemption(conn),
        partitions=PgPartitions(conn),
        rewards=PgReferralRewards(conn),
        settlement=PgSettlement(conn),
    )


class PgUnitOfWork:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._single = repositories(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repositories]:
        async with transaction(self._pool) as conn:
            yield repositories(conn)

    @property
    def single(self) -> Repositories:
        return self._single
