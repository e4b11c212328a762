"""The system as `make run REPLICAS=2` starts it (the launcher, two auth and two loyalty
replicas, the gateway): HTTP clients from their own addresses are judged apart (the launcher's
per-run CLIENT_ADDRESS_KEY lets the gateway vouch for them), and the example billing client
(examples/billing_client.py) confirms and refunds a purchase over gRPC."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from auth_service.domain import Role, Status, User
from auth_service.keys import KeyRing, new_private_pem, signing_key
from auth_service.token_issuer import TokenIssuer
from bench.ports import free_port
from tests.e2e.processes import ROOT, run
from tests.e2e.test_launcher import _free_base
from tests.fixtures.auth import unique_email

PER_ADDRESS = 3


@dataclass
class System:
    env: dict[str, str]
    gateway: str
    issuer: TokenIssuer

    def admin_token(self) -> str:
        admin = User(str(uuid.uuid4()), "", Status.ACTIVE, Role.ADMIN, 1)
        return self.issuer.access_token(admin, str(uuid.uuid4()))


def _wait_ready(launcher: subprocess.Popen[str], deadline_s: float = 180) -> None:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert launcher.stdout is not None
        for line in launcher.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if lines.get(timeout=1).startswith("ready"):
                return
        except queue.Empty:
            assert launcher.poll() is None, "the launcher exited during start-up"
    raise AssertionError("the system was not ready in time")


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    pem = new_private_pem()  # known to the test, so it can mint the tokens auth would issue
    prefix = os.environ.get("REDIS_KEY_PREFIX", "loyalty:")
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{_free_base()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{_free_base()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "AUTH_JWT_PRIVATE_KEY": pem,
        "LOYALTY_PROMO_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
        "LOYALTY_PROMO_FAILURES_PER_USER": "1000",
        # Throttle buckets of this run's own.
        "REDIS_KEY_PREFIX": f"{prefix}e2e{uuid.uuid4().hex[:6]}:",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("CLIENT_ADDRESS_KEY", None)  # as under a plain `make run`: the launcher makes one
    for variable in ("GATEWAY_TRUSTED_PROXIES", "AUTH_TRUSTED_PEERS", "LOYALTY_TRUSTED_PEERS"):
        env.pop(variable, None)
    for service in ("auth_service", "loyalty_service"):
        run([sys.executable, "-m", service, "migrate"], env)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "common.processes.launcher", "--replicas", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_ready(launcher)
        issuer = TokenIssuer(KeyRing.of_one(signing_key(pem)), 3600)
        yield System(env, f"http://{env['GATEWAY_HTTP_ADDR']}", issuer)
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()


def _from(address: str, system: System) -> httpx.Client:
    """An HTTP client whose connections come from `address` (all of 127/8 is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(transport=transport, base_url=system.gateway, timeout=10)


def _signed_in(client: httpx.Client) -> dict[str, str]:
    email = unique_email("e2e")
    body = {"email": email, "password": "correct horse battery"}
    assert client.post("/v1/auth/register", json=body).status_code == 200
    tokens = client.post("/v1/auth/login", json=body).json()
    return {"authorization": f"Bearer {tokens['accessToken']}"}


def _guess(client: httpx.Client, auth: dict[str, str], **headers: str) -> str:
    answer = client.post(
        "/v1/promocodes/apply",
        json={"code": f"NOPE{uuid.uuid4().hex[:8]}", "tariffId": "monthly"},
        headers={**auth, **headers},
    )
    reason: str = answer.json()["details"][0]["reason"]
    return reason


def test_http_clients_are_judged_each_by_its_own_address(system: System) -> None:
    """Over two loyalty replicas (the buckets are Redis's, shared): one client's wrong codes
    throttle it alone, whatever X-Forwarded-For it sends; another address is untouched."""
    with _from("127.0.0.2", system) as noisy, _from("127.0.0.3", system) as quiet:
        noisy_auth, quiet_auth = _signed_in(noisy), _signed_in(quiet)
        reasons = [
            _guess(noisy, noisy_auth, **{"x-forwarded-for": f"198.51.100.{n}"})
            for n in range(PER_ADDRESS + 1)
        ]
        assert reasons == ["PROMO_CODE_NOT_FOUND"] * PER_ADDRESS + ["TOO_MANY_PROMO_ATTEMPTS"]
        assert _guess(quiet, quiet_auth) == "PROMO_CODE_NOT_FOUND"


def _service_account(env: dict[str, str]) -> tuple[str, str]:
    command = [sys.executable, "-m", "auth_service", "create-service-account"]
    command += ["--name", "billing", "--scope", "purchases:settle"]
    printed = run(command, env)
    found = dict(line.split("=", 1) for line in printed.splitlines() if line.startswith("client_"))
    return found["client_id"], found["client_secret"]


def test_the_example_billing_client_confirms_and_refunds(system: System) -> None:
    code = f"BILL{uuid.uuid4().hex[:8].upper()}"
    admin = {"authorization": f"Bearer {system.admin_token()}"}
    with _from("127.0.0.4", system) as http:
        made = http.post(
            "/v1/admin/promocodes",
            json={"code": code, "percentOff": 10, "allUsers": True},
            headers=admin,
        )
        assert made.status_code == 200, made.text
        buyer = _signed_in(http)
        used = http.post(
            "/v1/promocodes/use", json={"code": code, "tariffId": "monthly"}, headers=buyer
        )
        purchase_id = used.json()["purchaseId"]
    # Billing as an operator sets it up: a service account from auth's command line, whose
    # client credentials the example exchanges at POST /v1/auth/token.
    client_id, client_secret = _service_account(system.env)
    env = {
        **system.env,
        "LOYALTY_GRPC_ADDR": f"ipv4:{system.env['LOYALTY_GRPC_ADDR']},"
        f"127.0.0.1:{int(system.env['LOYALTY_GRPC_ADDR'].rpartition(':')[2]) + 10}",
        "GATEWAY_URL": system.gateway,
        "BILLING_CLIENT_ID": client_id,
        "BILLING_CLIENT_SECRET": client_secret,
    }
    example = [sys.executable, str(ROOT / "examples" / "billing_client.py")]
    confirmed = run([*example, "confirm", purchase_id], env)
    assert '"status": "PURCHASE_STATUS_COMPLETED"' in confirmed
    refunded = run([*example, "refund", purchase_id, "--reason", "customer asked"], env)
    assert '"status": "PURCHASE_STATUS_REFUNDED"' in refunded
    # A refused call prints the error's reason and exits 1.
    refused = subprocess.run(
        [*example, "refund", str(uuid.uuid4())], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "PURCHASE_NOT_FOUND" in refused.stderr
