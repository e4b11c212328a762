"""Promo code specs as CSV rows and back, so an export imports into another database as is.

Money is in minor units, lists are separated by ';', times are ISO 8601 with a UTC offset
(a time without one is refused: it would silently mean the server's zone, and windows would
end hours early for whoever wrote it elsewhere), an empty cell takes the spec's default.

Strict and safe: each row is checked on its own, ranges included (a number or a time the
database cannot hold is that row's error, never the whole file's); digits are ASCII only (Python
would read "٣" as 3); a column named twice is refused; a cell a spreadsheet would run as a
formula (starting with =, +, -, @, a tab or a CR) is written with a leading ' and read back
without it, so an export imports as is."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from common.errors import FieldViolation, InvalidArgument
from loyalty_service.domain.campaigns import CampaignReport
from loyalty_service.domain.codes import DEFAULT_CURRENCY
from loyalty_service.domain.schedule import Duration
from loyalty_service.domain.specs import CodeSpec, MoneyInput

COLUMNS = (
    "code",
    "percent_off",
    "amount_off_minor",
    "fixed_price_minor",
    "currency",
    "starts_at",
    "ends_at",
    "max_uses",
    "per_user_limit",
    "tariff_ids",
    "all_users",
    "user_ids",
    "group_ids",
    "description",
    "duration",
    "duration_periods",
    "max_discount_minor",
    "budget_minor",
    "first_purchase_only",
    "min_price_minor",
    "refund_returns_use",
)
MAX_ROWS = 10_000
_MONEY = {
    "amount_off_minor": "amount_off",
    "fixed_price_minor": "fixed_price",
    "max_discount_minor": "max_discount",
    "budget_minor": "budget",
    "min_price_minor": "min_price",
}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
_EXTRA = "\x00extra"  # where the reader puts cells past the header's last column
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_INTEGER = re.compile(r"^[+-]?[0-9]+$", re.ASCII)
# What the columns of promo_codes hold: int counts, bigint money (kept well inside it).
MAX_COUNT = 2**31 - 1
MAX_MONEY = 10**15
MIN_YEAR, MAX_YEAR = 1970, 9999
_COUNT_COLUMNS = ("percent_off", "max_uses", "per_user_limit", "duration_periods")


def safe_cell(text: str) -> str:
    """The cell as written to a CSV: a would-be formula gets a leading ' (OWASP's advice)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unescaped(text: str) -> str:
    """A cell as read: the ' safe_cell added (before a formula character) comes off."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def _money_cell(money: MoneyInput | None) -> str:
    return "" if money is None else str(money.amount_minor)


def _time_cell(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _cells(spec: CodeSpec) -> dict[str, str]:
    return {
        "code": spec.code,
        "percent_off": "" if spec.percent_off is None else str(spec.percent_off),
        "currency": DEFAULT_CURRENCY,
        "starts_at": _time_cell(spec.starts_at),
        "ends_at": _time_cell(spec.ends_at),
        "max_uses": str(spec.max_uses),
        "per_user_limit": str(spec.per_user_limit),
        "tariff_ids": ";".join(spec.tariff_ids),
        "all_users": str(spec.all_users).lower(),
        "user_ids": ";".join(spec.user_ids),
        "group_ids": ";".join(spec.group_ids),
        "description": spec.description,
        "duration": spec.duration.value,
        "duration_periods": str(spec.duration_periods),
        "first_purchase_only": str(spec.first_purchase_only).lower(),
        "refund_returns_use": str(spec.refund_returns_use).lower(),
        **{column: _money_cell(getattr(spec, name)) for column, name in _MONEY.items()},
    }


def header() -> str:
    return _lines([list(COLUMNS)])


def rows(specs: Iterable[CodeSpec]) -> str:
    return _lines([[_cells(spec)[c] for c in COLUMNS] for spec in specs])


def _lines(values: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [[safe_cell(cell) for cell in row] for row in values]
    )
    return out.getvalue()


def table(head: list[str], body: list[list[str]]) -> str:
    """Any table as CSV, every cell made safe."""
    return _lines([head, *body])


class _Cells:
    """One row's cells, collecting every bad one instead of stopping at the first."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = {k: _unescaped((v or "").strip()) for k, v in values.items()}
        self.problems: list[FieldViolation] = []
        if _EXTRA in values:
            self.problems.append(FieldViolation("row", "has more cells than the header"))

    def parse(self, column: str, convert: Callable[[str], Any], default: Any) -> Any:
        raw = self.values.get(column, "")
        if not raw:
            return default
        try:
            return convert(raw)
        except ValueError as error:
            self.problems.append(FieldViolation(column, str(error)))
            return default

    def count(self, column: str, default: int) -> int:
        return int(self.parse(column, _count, default))

    def money(self, column: str) -> MoneyInput | None:
        amount = self.parse(column, _amount, None)
        currency = self.values.get("currency", "") or DEFAULT_CURRENCY
        return None if amount is None else MoneyInput(amount, currency)


def _integer(raw: str) -> int:
    if not _INTEGER.match(raw):
        raise ValueError(f"{raw!r} is not a whole number in ASCII digits")
    return int(raw)


def _bounded(raw: str, low: int, high: int) -> int:
    value = _integer(raw)
    if not low <= value <= high:
        raise ValueError(f"{raw} is out of range ({low} to {high})")
    return value


def _count(raw: str) -> int:
    return _bounded(raw, -MAX_COUNT, MAX_COUNT)


def _amount(raw: str) -> int:
    return _bounded(raw, -MAX_MONEY, MAX_MONEY)


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _time(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{raw!r} has no UTC offset (write Z or +03:00)")
    if not MIN_YEAR <= value.year <= MAX_YEAR or not raw.isascii():
        raise ValueError(f"{raw!r} is out of range (years {MIN_YEAR} to {MAX_YEAR})")
    return value


def _duration(raw: str) -> Duration:
    try:
        return Duration(raw.upper().removeprefix("DURATION_"))
    except ValueError:
        raise ValueError(f"{raw!r} is not ONCE, REPEATING or FOREVER") from None


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(";") if part.strip())


def spec_of(values: dict[str, str]) -> CodeSpec:
    """The spec one CSV row describes; INVALID_ARGUMENT naming every bad column."""
    cells = _Cells(values)
    spec = CodeSpec(
        code=cells.values.get("code", ""),
        percent_off=cells.parse("percent_off", _count, None),
        amount_off=cells.money("amount_off_minor"),
        fixed_price=cells.money("fixed_price_minor"),
        starts_at=cells.parse("starts_at", _time, None),
        ends_at=cells.parse("ends_at", _time, None),
        max_uses=cells.count("max_uses", 0),
        per_user_limit=cells.count("per_user_limit", 1),
        tariff_ids=_list(cells.values.get("tariff_ids", "")),
        all_users=cells.parse("all_users", _boolean, False),
        user_ids=_list(cells.values.get("user_ids", "")),
        group_ids=_list(cells.values.get("group_ids", "")),
        description=cells.values.get("description", ""),
        duration=cells.parse("duration", _duration, Duration.ONCE),
        duration_periods=cells.count("duration_periods", 0),
        max_discount=cells.money("max_discount_minor"),
        budget=cells.money("budget_minor"),
        first_purchase_only=cells.parse("first_purchase_only", _boolean, False),
        min_price=cells.money("min_price_minor"),
        # An empty cell (or a file without the column) keeps the default: true.
        refund_returns_use=cells.parse("refund_returns_use", _boolean, True),
    )
    if cells.problems:
        raise InvalidArgument(cells.problems)
    return spec


def read(text: str) -> list[dict[str, str]]:
    """The data rows of a CSV with a header naming known columns (at least `code`)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=False)
    columns = [c.strip() for c in reader.fieldnames or ()]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InvalidArgument.of("csv", f"columns named twice: {', '.join(repeated)}")
    unknown = [c for c in columns if c not in COLUMNS]
    if "code" not in columns or unknown:
        problem = f"unknown columns: {', '.join(unknown)}" if unknown else "no code column"
        raise InvalidArgument.of("csv", f"{problem}; the header names columns of {COLUMNS}")
    reader.fieldnames = columns
    try:
        # A row of empty cells (a spreadsheet's trailing ",,,") is no row, not a generated code.
        found = [row for row in map(_plain, reader) if any(v.strip() for v in row.values())]
    except csv.Error as error:
        raise InvalidArgument.of("csv", f"malformed CSV: {error}") from None
    if len(found) > MAX_ROWS:
        raise InvalidArgument.of("csv", f"at most {MAX_ROWS} rows at once")
    return found


def _plain(row: dict[Any, Any]) -> dict[str, str]:
    cells = {k: v or "" for k, v in row.items() if isinstance(k, str)}
    if row.get(None):
        cells[_EXTRA] = "yes"
    return cells


REPORT_COLUMNS = [
    "date",
    "uses",
    "confirms",
    "cancels",
    "refunds",
    "rejections",
    "discount_granted_minor",
]


def report_table(report: CampaignReport) -> str:
    """A campaign's report by day as CSV, then one row of totals (date 'total')."""
    body = [
        [d.date, str(d.uses), str(d.confirms), str(d.cancels),
         str(report.refunds_by_day.get(d.date, 0)), str(d.rejections), str(d.discount_granted)]
        for d in report.daily
    ]  # fmt: skip
    totals = [
        "total",
        str(report.uses),
        str(report.confirms),
        str(report.cancels),
        str(report.refunds),
        str(sum(d.rejections for d in report.daily)),
        str(report.discount_granted),
    ]
    return table(REPORT_COLUMNS, [*body, totals])
