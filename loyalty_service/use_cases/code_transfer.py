"""Export codes as CSV, and import them: a code per row, each row all-or-nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from common.errors import InvalidArgument, ServiceError
from loyalty_service.domain import code_csv
from loyalty_service.domain.codes import normalize_code
from loyalty_service.domain.specs import spec_of_code
from loyalty_service.use_cases.administration import PromoAdmin
from loyalty_service.use_cases.ports import UnitOfWork

EXPORT_BATCH = 500


@dataclass(frozen=True)
class RowResult:
    row: int  # 1 = the first row after the header
    code: str
    reason: str  # empty when created
    message: str = ""

    @property
    def created(self) -> bool:
        return not self.reason


def _column(field: str) -> str:
    """The CSV column of a spec field (amount_off.amount_minor: amount_off_minor)."""
    if field.endswith(".amount_minor"):
        return field.removesuffix(".amount_minor") + "_minor"
    return "currency" if field.endswith(".currency") else field


def _described(error: InvalidArgument) -> str:
    return "; ".join(f"{_column(v.field)}: {v.description}" for v in error.violations)


class CodeTransfer:
    def __init__(self, store: UnitOfWork, admin: PromoAdmin) -> None:
        self._store = store
        self._admin = admin

    async def export(self, query: str, status: str) -> AsyncIterator[str]:
        """The header, then the matching codes in code order, a batch of rows at a time."""
        yield code_csv.header()
        after: str | None = None
        while True:
            found = await self._store.single.codes.page(
                after, EXPORT_BATCH, normalize_code(query), status, datetime.now(UTC)
            )
            if not found:
                return
            yield code_csv.rows(spec_of_code(code) for code in found)
            after = found[-1].code

    async def import_csv(self, text: str) -> list[RowResult]:
        return [
            await self._import_row(number, values)
            for number, values in enumerate(code_csv.read(text), start=1)
        ]

    async def _import_row(self, number: int, values: dict[str, str]) -> RowResult:
        typed = normalize_code(values.get("code", ""))
        try:
            created = await self._admin.add(code_csv.spec_of(values))
        except InvalidArgument as error:
            return RowResult(number, typed, "INVALID_ARGUMENT", _described(error))
        except ServiceError as error:
            return RowResult(number, typed, error.reason, error.message)
        return RowResult(number, created, "")
