"""Structured JSON logs, one line per event, carrying the current request id."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from common.telemetry.sentry import scrub
from common.telemetry.trace_context import add_trace_ids

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id:
        event.setdefault("request_id", request_id)
    return event


def _scrubbed(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """No password, token or email reaches the logs, not even inside a traceback."""
    cleaned: MutableMapping[str, Any] = scrub(dict(event))
    return cleaned


def configure(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrubbed,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write() per line, newline included: stderr writes through, and print() sends the
        # newline apart, so two workers sharing the stream could glue their lines together.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, **who())


def who() -> dict[str, str]:
    """Which replica (`make run`'s SERVICE_REPLICA) and which worker (the supervisor's
    SERVICE_WORKER, "INDEX/COUNT") writes: several processes of one service share one stream,
    and a line must say which of them it came from. A process alone is replica 0, worker 0."""
    worker = os.environ.get("SERVICE_WORKER", "").partition("/")[0]
    return {
        "replica": os.environ.get("SERVICE_REPLICA", "") or "0",
        "worker": worker if worker.isdigit() else "0",
    }


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
