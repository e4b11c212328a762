"""The gateway's dispatch (gateway.app.Site): the API's calls go to the forwarder past
Starlette, the rest to Starlette, and every answer of either keeps the request id and the
security headers. In-process, with no backend: what is checked happens before any call."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.app import create_app, is_api_call
from gateway.config import GatewaySettings


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("POST", "/v1/promocodes/use", True),
        ("GET", "/v1/tariffs", True),
        ("DELETE", "/v1/anything/at/all", True),
        ("POST", "/v1/auth/token", False),  # the OAuth endpoint is Starlette's
        ("HEAD", "/v1/tariffs", False),  # no API method: Starlette's 404 or 405
        ("OPTIONS", "/v1/tariffs", False),
        ("GET", "/v1", False),
        ("GET", "/admin", False),
        ("GET", "/readyz", False),
    ],
)
def test_which_calls_are_the_apis(method: str, path: str, api: bool) -> None:
    assert is_api_call({"type": "http", "method": method, "path": path}) is api


def test_a_lifespan_is_never_an_api_call() -> None:
    assert not is_api_call({"type": "lifespan"})


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_an_api_call_and_a_page_both_carry_the_request_id_and_security_headers() -> None:
    app = create_app(GatewaySettings())
    seen: list[str] = []

    async def forward(request: Request) -> Response:
        seen.append(request.scope["path"])
        return Response(b"{}", media_type="application/json")

    app.gateway.forward = forward  # type: ignore[method-assign]
    async with _client(app) as client:
        api = await client.post("/v1/promocodes/use", headers={"x-request-id": "req-1"})
        page = await client.get("/livez", headers={"x-request-id": "req-2"})
    assert seen == ["/v1/promocodes/use"]
    assert (api.status_code, page.status_code) == (200, 200)
    assert api.headers["x-request-id"] == "req-1" and page.headers["x-request-id"] == "req-2"
    for answer in (api, page):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert api.headers["cache-control"] == "no-store"


async def test_a_bug_in_the_forwarder_is_a_500_with_the_request_id() -> None:
    app = create_app(GatewaySettings())

    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    app.gateway.forward = broken  # type: ignore[method-assign]
    async with _client(app) as client:
        answer = await client.post("/v1/promocodes/use", headers={"x-request-id": "req-3"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-3"
