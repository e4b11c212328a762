from __future__ import annotations

from common.telemetry.sentry import REDACTED, before_send


def test_secrets_and_emails_are_redacted_at_any_depth() -> None:
    event = {
        "message": "login failed for ann@example.com with Bearer abc.def.ghi",
        "extra": {"password": "hunter22", "nested": [{"refresh_token": "r1"}, "ok"]},
        "request": {"headers": {"authorization": "Bearer x", "x-request-id": "42"}},
        "exception": {"values": [{"value": "token eyJhbGciOi.eyJzdWIi.c2ln rejected"}]},
    }
    scrubbed = before_send(event, None)
    text = repr(scrubbed)
    for secret in ("ann@example.com", "hunter22", "r1", "abc.def.ghi", "eyJhbGciOi"):
        assert secret not in text
    assert scrubbed["extra"]["password"] == REDACTED
    assert scrubbed["request"]["headers"]["x-request-id"] == "42"
    assert scrubbed["extra"]["nested"][1] == "ok"
