"""The whole system started with the README's own command (`make run`), driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.ports import free_port
from tests.e2e.processes import ROOT, grpcurl, run
from tests.fixtures.auth import PASSWORD, unique_email


@pytest.fixture(scope="module")
def system() -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "AUTH_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
    }
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://{env['GATEWAY_HTTP_ADDR']}"
    try:
        _wait_healthy(base, process)
        yield {**env, "BASE": base}
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
        # make itself reports the interrupt by dying of SIGINT; the launcher exits cleanly.
        assert process.wait(30) in (0, -signal.SIGINT)
        output = process.stdout.read() if process.stdout else ""
        for name in ("auth", "loyalty", "gateway"):
            assert f"{name} " in output
        assert "stopping" in output
        for variable in ("AUTH_GRPC_ADDR", "LOYALTY_GRPC_ADDR", "GATEWAY_HTTP_ADDR"):
            assert not _listening(env[variable]), f"{variable} still served after Ctrl-C"


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def _wait_healthy(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "make run exited during start-up"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the system did not become healthy")


def test_an_admin_code_and_a_user_session_over_http(system: dict[str, str]) -> None:
    base = system["BASE"]
    admin_email = unique_email("admin")
    run(
        [sys.executable, "-m", "auth_service", "create-admin", "--email", admin_email],
        {**system, "AUTH_ADMIN_PASSWORD": PASSWORD},
    )
    login = json.dumps({"email": admin_email, "password": PASSWORD})
    admin_token = json.loads(
        grpcurl(system["AUTH_GRPC_ADDR"], "loyalty.auth.v1.AuthService/Login", data=login)
    )["access_token"]
    code = f"SYS{os.getpid()}"
    grpcurl(
        system["LOYALTY_GRPC_ADDR"],
        "loyalty.promo.v1.PromoAdminService/CreatePromoCode",
        data=json.dumps(
            {
                "code": code,
                "fixed_price": {"amount_minor": 100},
                "all_users": True,
                "per_user_limit": 2,
            }
        ),
        headers=(f"authorization: Bearer {admin_token}",),
    )
    with httpx.Client(base_url=base, timeout=10) as http:
        email = unique_email("app")
        assert (
            http.post("/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code
            == 200
        )
        tokens = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        auth = {"Authorization": f"Bearer {tokens['accessToken']}"}
        assert len(http.get("/v1/tariffs", headers=auth).json()["tariffs"]) == 2
        active = http.get("/v1/promocodes/active?pageSize=1000", headers=auth).json()["promoCodes"]
        assert code in [c["code"] for c in active]
        quote = http.post(
            "/v1/promocodes/apply", json={"code": code, "tariffId": "yearly"}, headers=auth
        )
        assert quote.json()["finalPrice"]["amountMinor"] == "100"
        bought = [
            http.post(
                "/v1/promocodes/use",
                json={"code": code, "tariffId": "yearly", "requestId": r},
                headers=auth,
            ).json()
            for r in ("a", "b")
        ]
        # Payment went through: the payment side (here an admin) confirms, not the buyer.
        settler = {"Authorization": f"Bearer {admin_token}"}
        done = http.post(f"/v1/purchases/{bought[0]['purchaseId']}/confirm", headers=settler)
        assert done.json()["status"] == "PURCHASE_STATUS_COMPLETED"
        back = http.post(f"/v1/purchases/{bought[1]['purchaseId']}/cancel", headers=auth)
        assert back.json()["status"] == "PURCHASE_STATUS_CANCELLED"
        again = http.post(
            "/v1/promocodes/use", json={"code": code, "tariffId": "yearly"}, headers=auth
        )
        assert again.status_code == 200  # the cancelled use came back
        limit = http.post(
            "/v1/promocodes/use", json={"code": code, "tariffId": "yearly"}, headers=auth
        )
        assert limit.status_code == 400
        assert limit.json()["details"][0]["reason"] == "PROMO_CODE_USER_LIMIT_REACHED"
        assert http.post("/v1/promocodes/use", content=b"{", headers=auth).status_code == 400
        assert http.get("/v1/tariffs").status_code == 401
        assert http.get("/openapi.json").json()["openapi"].startswith("3.")


EXPECTED_METRICS = {
    "AUTH_METRICS_ADDR": [
        'auth_rpc_requests_total{code="OK",method="/loyalty.auth.v1.AuthService/Login"}',
        "auth_rpc_duration_seconds_bucket",
        "auth_outbox_backlog",
        "auth_outbox_oldest_age_seconds",
        "auth_outbox_published_total",
    ],
    "LOYALTY_METRICS_ADDR": [
        "loyalty_promo_uses_total 3.0",
        "loyalty_promo_confirms_total 1.0",
        "loyalty_promo_cancels_total 1.0",
        "loyalty_promo_expiries_total",
        'loyalty_promo_rejections_total{reason="PROMO_CODE_USER_LIMIT_REACHED"} 1.0',
        "loyalty_consumer_deliveries_total",
        "loyalty_consumer_retries_total",
        "loyalty_consumer_dead_lettered_total",
        "loyalty_outbox_backlog",
        "loyalty_outbox_oldest_age_seconds",
        'loyalty_rpc_requests_total{code="FAILED_PRECONDITION",method="/loyalty.promo.v1.PromoService/UsePromoCode"}',
    ],
    "GATEWAY_METRICS_ADDR": [
        'gateway_http_requests_total{route="POST /v1/promocodes/use",status="200"} 3.0',
        'gateway_http_requests_total{route="GET /v1/tariffs",status="401"} 1.0',
        "gateway_http_request_duration_seconds_bucket",
    ],
}


def test_each_process_serves_its_metrics_after_the_traffic(system: dict[str, str]) -> None:
    for variable, names in EXPECTED_METRICS.items():
        text = httpx.get(f"http://{system[variable]}/metrics", timeout=5).text
        for name in names:
            assert name in text, (variable, name)
        assert "_created" not in text, variable
