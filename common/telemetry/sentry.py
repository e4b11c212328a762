"""Error reporting to Sentry, off when SENTRY_DSN is empty, scrubbed of secrets."""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.grpc import GRPCIntegration

from common.telemetry.trace_context import tag_sentry_event

_SECRET_KEY = re.compile(r"pass|token|secret|authorization|cookie|email|jwt|key", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_BEARER = re.compile(r"(?i)bearer\s+\S+")
REDACTED = "[redacted]"


def scrub(value: Any) -> Any:
    """Redact anything that looks like a password, token or email, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _BEARER.sub(REDACTED, _JWT.sub(REDACTED, _EMAIL.sub(REDACTED, value)))
    return value


def before_send(event: Any, _hint: Any) -> Any:
    return scrub(tag_sentry_event(event))


def init(dsn: str, service: str) -> None:
    if not dsn:
        return
    sentry_sdk.init(
        dsn=dsn,
        server_name=service,
        send_default_pii=False,
        include_local_variables=False,
        integrations=[GRPCIntegration()],
        before_send=before_send,
        before_send_transaction=before_send,
    )
