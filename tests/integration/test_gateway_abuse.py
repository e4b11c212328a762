"""The gateway against abuse: whose X-Forwarded-For it believes, Retry-After on throttled
calls, and the security headers of its pages and answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.security import PAGE_POLICY
from tests.fixtures.auth import (
    PASSWORD,
    AuthTestServer,
    auth_settings,
    start_auth,
    stop_auth,
    unique_email,
)
from tests.fixtures.gateway import gateway_settings, open_client
from tests.fixtures.loyalty import LoyaltyTestServer, loyalty_settings, start_loyalty, stop_loyalty
from tests.integration.test_auth_abuse import own_prefix
from tests.integration.test_loyalty_promo import new_code

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"


@pytest.fixture
async def stack(auth_server: AuthTestServer) -> AsyncIterator[Any]:
    """Builds auth, loyalty and a gateway with the given settings; stops them after."""
    closers: list[Any] = []

    async def make(
        proxies: str = "", auth: dict[str, Any] | None = None, loyalty: dict[str, Any] | None = None
    ) -> httpx.AsyncClient:
        # Its own buckets (and revocations), shared by this auth and this loyalty only.
        prefix = own_prefix()
        auth_server_ = await start_auth(
            auth_settings(auth_trusted_peers="127.0.0.1", redis_key_prefix=prefix, **auth or {})
        )
        closers.append(lambda: stop_auth(auth_server_))
        loyalty_server = await start_loyalty(
            loyalty_settings(
                auth_server_.address,
                loyalty_trusted_peers="127.0.0.1",
                redis_key_prefix=prefix,
                **loyalty or {},
            )
        )
        closers.append(lambda: stop_loyalty(loyalty_server))
        client, gateway = await open_client(
            gateway_settings(
                auth_server_.address, loyalty_server.address, gateway_trusted_proxies=proxies
            )
        )
        closers.append(client.aclose)
        closers.append(gateway.backends.close)
        return client

    yield make
    for close in reversed(closers):
        await close()


async def logins(http: httpx.AsyncClient, spoofed: list[str]) -> list[httpx.Response]:
    return [
        await http.post(
            "/v1/auth/login",
            json={"email": unique_email("x"), "password": "wrong password"},
            headers={"X-Forwarded-For": address},
        )
        for address in spoofed
    ]


async def test_x_forwarded_for_from_an_untrusted_client_is_ignored(stack: Any) -> None:
    http = await stack(auth={"auth_login_limit_per_address": 5})
    answers = await logins(http, [f"198.51.100.{n}" for n in range(8)])
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    throttled = answers[-1]
    assert int(throttled.headers["retry-after"]) >= 1
    assert "TOO_MANY_LOGIN_ATTEMPTS" in throttled.text


async def test_x_forwarded_for_from_a_trusted_proxy_is_believed(stack: Any) -> None:
    http = await stack(proxies="127.0.0.0/8", auth={"auth_login_limit_per_address": 5})
    answers = await logins(http, [f"198.51.100.{n}" for n in range(8)])
    assert [a.status_code for a in answers] == [401] * 8
    # The client is the right-most address the proxy did not add: a forged left part is moot.
    answers = await logins(http, [f"10.9.9.{n}, 192.0.2.77" for n in range(6)])
    assert [a.status_code for a in answers] == [401] * 5 + [429]


async def test_retry_after_is_the_time_left_of_a_throttled_promo_guesser(
    stack: Any, loyalty_server: LoyaltyTestServer, auth_server: AuthTestServer
) -> None:
    http = await stack(
        loyalty={
            "loyalty_promo_failures_per_user": 2,
            "loyalty_promo_failure_window_seconds": 300,
        }
    )
    email = unique_email("guesser")
    await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    token = (await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()[
        "accessToken"
    ]
    apply = {"code": new_code(), "tariffId": "monthly"}
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        missed = await http.post("/v1/promocodes/apply", json=apply, headers=auth)
        assert missed.status_code == 404
    throttled = await http.post("/v1/promocodes/apply", json=apply, headers=auth)
    assert throttled.status_code == 429
    body = throttled.json()
    retry = next(d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo"))
    seconds = int(throttled.headers["retry-after"])
    assert 75 < seconds <= 150  # a token per 150 s
    assert retry["retryDelay"] == f"{seconds}s"
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert (info["reason"], info["domain"]) == ("TOO_MANY_PROMO_ATTEMPTS", "promo.loyalty")


@pytest.mark.parametrize("path", ["/admin", "/admin/", "/admin/admin.js", "/docs", "/docs/docs.js"])
async def test_pages_send_a_strict_content_security_policy(
    http: httpx.AsyncClient, path: str
) -> None:
    answer = await http.get(path)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert policy == PAGE_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("page", ["admin/index.html", "docs/index.html"])
def test_pages_have_no_inline_script_or_style(page: str) -> None:
    html = (STATIC / page).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


async def test_token_answers_are_never_cached(http: httpx.AsyncClient) -> None:
    email = unique_email("nocache")
    await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and "accessToken" in login.json()
    refresh = await http.post(
        "/v1/auth/refresh", json={"refreshToken": login.json()["refreshToken"]}
    )
    for answer in (login, refresh):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
