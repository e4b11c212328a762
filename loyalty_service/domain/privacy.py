"""What a user's export holds of the referral program: their part only, never the other
party's id (a referrer sees that a referral happened, not who was referred)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

REFERRER = "REFERRER"
REFEREE = "REFEREE"


@dataclass(frozen=True)
class MyReferral:
    role: str  # REFERRER or REFEREE
    code: str
    status: str
    created_at: datetime
    purchase_id: str  # the referee's own purchase; "" for the referrer


@dataclass(frozen=True)
class MyReward:
    outcome: str
    code: str  # "" until a reward code was issued
    created_at: datetime
