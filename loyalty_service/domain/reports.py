"""What a code's report holds beyond its counters."""

from __future__ import annotations

from dataclasses import dataclass

# A year and a bit of days with activity: enough for any campaign's chart.
MAX_REPORT_DAYS = 400


@dataclass(frozen=True)
class DayStats:
    date: str  # YYYY-MM-DD, UTC
    uses: int
    confirms: int
    cancels: int  # cancelled or expired
    rejections: int
    discount_granted: int  # of that day's purchases still live
