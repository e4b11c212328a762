"""Groups of users, the audience unit of promo codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class GroupNameTaken(Exception):
    """A group with this name exists already."""


@dataclass(frozen=True)
class Group:
    group_id: str
    name: str
    member_count: int
    created_at: datetime
