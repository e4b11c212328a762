"""A user's status as auth owns it and loyalty mirrors it: a plain enum, so both services'
domains may use it (the import-linter contracts allow exactly this module and common.errors
to a domain); its protobuf form is common/rpc/user_status_proto.py's."""

from __future__ import annotations

from enum import StrEnum


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    BLOCKED = "BLOCKED"
    DELETED = "DELETED"
