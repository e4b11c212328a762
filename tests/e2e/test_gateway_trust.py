"""The gateway process as started in production (uvicorn): a client on the same machine
cannot choose its address with X-Forwarded-For, and pages carry their security headers."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from bench.ports import free_port
from tests.e2e.processes import run, start, stop, wait_serving
from tests.fixtures.auth import unique_email


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        # Auth believes the gateway; the gateway, left at its default, believes nobody.
        "AUTH_TRUSTED_PEERS": "127.0.0.1",
        "AUTH_LOGIN_LIMIT_PER_ADDRESS": "5",
        # Its own buckets: other tests' failures from 127.0.0.1 must not count here.
        "REDIS_KEY_PREFIX": f"{os.environ['REDIS_KEY_PREFIX']}{uuid.uuid4().hex[:8]}:",
    }
    env.pop("GATEWAY_TRUSTED_PROXIES", None)
    run([sys.executable, "-m", "auth_service", "migrate"], env)
    auth = start("auth_service", env)
    gateway = start("gateway", env)
    try:
        wait_serving(env["AUTH_GRPC_ADDR"], auth)
        base = f"http://{env['GATEWAY_HTTP_ADDR']}"
        _wait_answering(f"{base}/openapi.json")
        yield base
    finally:
        stop(gateway)
        stop(auth)


def _wait_answering(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_a_local_client_cannot_spoof_its_address(gateway: str) -> None:
    statuses, last = [], None
    for n in range(8):
        last = httpx.post(
            f"{gateway}/v1/auth/login",
            json={"email": unique_email("spoof"), "password": "wrong password"},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
            timeout=10,
        )
        statuses.append(last.status_code)
    assert statuses == [401] * 5 + [429] * 3
    assert last is not None and int(last.headers["retry-after"]) >= 1


def test_pages_and_answers_carry_security_headers(gateway: str) -> None:
    for path in ("/admin", "/docs"):
        page = httpx.get(f"{gateway}{path}", timeout=10)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    answer = httpx.post(f"{gateway}/v1/auth/login", json={}, timeout=10)
    assert answer.headers["cache-control"] == "no-store"
