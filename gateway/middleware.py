"""Request ids on every response, and one log line per request."""

from __future__ import annotations

import functools
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.telemetry.logs import get_logger, request_id_var
from gateway import metrics

log = get_logger("http")
_VALID_ID = re.compile(r"^[\w.\-:]{1,128}$")


@functools.cache
def _series(route: str, status: int) -> tuple[Any, Any]:
    """A route's metric series, found once: a label lookup costs as much as the rest of the
    bookkeeping. The routes are the gateway's templates and the statuses the few it answers,
    so the cache stays small."""
    return metrics.HTTP_REQUESTS.labels(route, str(status)), metrics.HTTP_LATENCY.labels(route)


def request_id_from(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestIdAndLog:
    """Takes the caller's x-request-id (or makes one), echoes it, logs the request once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            # The route template (set by the gateway), so labels stay few whatever the paths.
            route = scope.get("route_template", "unmatched")
            requests, latency = _series(route, status["code"])
            requests.inc()
            latency.observe(elapsed)
            log.info(
                "http",
                method=scope["method"],
                path=scope["path"],
                status=status["code"],
                duration_ms=round(elapsed * 1000, 2),
            )
