"""A billing service settling purchases over gRPC: the example of docs/clients.md.

    python examples/billing_client.py confirm PURCHASE_ID
    python examples/billing_client.py refund PURCHASE_ID --reason "customer asked"
    python examples/billing_client.py cancel PURCHASE_ID

Configuration (environment, or the flags of the same name):
    LOYALTY_GRPC_ADDR     loyalty's gRPC target (default 127.0.0.1:50052; several replicas:
                          ipv4:127.0.0.1:50052,127.0.0.1:50062)
    GATEWAY_URL           where the token endpoint is (default http://127.0.0.1:8080)
    BILLING_CLIENT_ID     the service account's client id and secret: exchanged for a token
    BILLING_CLIENT_SECRET at POST /v1/auth/token (grant_type=client_credentials, RFC 6749 §4.4)
    BILLING_ACCESS_TOKEN  or a ready access token (scope purchases:settle)

It prints the purchase as JSON and exits 0, or prints the error's reason and details and
exits 1. Confirm, refund and cancel are idempotent, so a call that failed with UNAVAILABLE or
DEADLINE_EXCEEDED is retried with backoff, each attempt under its own deadline."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

DEADLINE_SECONDS = 5.0
ATTEMPTS = 4
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def access_token(args: argparse.Namespace) -> str:
    """A ready token, or one issued for the client credentials (OAuth 2.0 client credentials
    grant at the gateway's token endpoint)."""
    if args.client_id and args.client_secret:
        answer = httpx.post(
            f"{args.gateway_url}/v1/auth/token",
            data={"grant_type": "client_credentials"},
            auth=(args.client_id, args.client_secret),
            timeout=DEADLINE_SECONDS,
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token
    if args.access_token:
        return str(args.access_token)
    raise SystemExit("set BILLING_CLIENT_ID and BILLING_CLIENT_SECRET, or BILLING_ACCESS_TOKEN")


def settle_call(
    stub: promo_pb2_grpc.PromoServiceStub, args: argparse.Namespace
) -> Callable[..., Any]:
    """The RPC and its request for the command."""
    if args.command == "confirm":
        return lambda **kw: stub.ConfirmPurchase(
            promo_pb2.ConfirmPurchaseRequest(purchase_id=args.purchase_id), **kw
        )
    if args.command == "refund":
        ask = promo_pb2.RefundPurchaseRequest(purchase_id=args.purchase_id, reason=args.reason)
        return lambda **kw: stub.RefundPurchase(ask, **kw)
    ask_cancel = promo_pb2.CancelPromoCodeUseRequest(purchase_id=args.purchase_id)
    return lambda **kw: stub.CancelPromoCodeUse(ask_cancel, **kw)


def with_retries(call: Callable[..., Any], token: str) -> Any:
    """Retries an idempotent call on UNAVAILABLE / DEADLINE_EXCEEDED: exponential backoff with
    full jitter, one request id for every attempt (so the logs tie them together)."""
    metadata = (("authorization", f"Bearer {token}"), ("x-request-id", str(uuid.uuid4())))
    for attempt in range(ATTEMPTS):
        try:
            return call(metadata=metadata, timeout=DEADLINE_SECONDS)
        except grpc.RpcError as error:
            if error.code() not in RETRYABLE or attempt == ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


def error_details(error: grpc.RpcError) -> dict[str, Any]:
    """The google.rpc.Status in the grpc-status-details-bin trailer: ErrorInfo's reason,
    BadRequest's field violations, RetryInfo's delay."""
    found: dict[str, Any] = {"code": error.code().name, "message": error.details()}
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            for kind in (
                error_details_pb2.ErrorInfo,
                error_details_pb2.BadRequest,
                error_details_pb2.RetryInfo,
            ):
                message = kind()
                if detail.Unpack(message):
                    found[kind.DESCRIPTOR.name] = json_format.MessageToDict(message)
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("confirm", "refund", "cancel"))
    parser.add_argument("purchase_id")
    parser.add_argument("--reason", default="", help="refund: why the payment was taken back")
    env = os.environ.get
    parser.add_argument("--loyalty-grpc-addr", default=env("LOYALTY_GRPC_ADDR", "127.0.0.1:50052"))
    parser.add_argument("--gateway-url", default=env("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--client-id", default=env("BILLING_CLIENT_ID", ""))
    parser.add_argument("--client-secret", default=env("BILLING_CLIENT_SECRET", ""))
    parser.add_argument("--access-token", default=env("BILLING_ACCESS_TOKEN", ""))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    token = access_token(args)
    # round_robin spreads the calls over every replica a multi-address target names.
    options = [("grpc.lb_policy_name", "round_robin")]
    with grpc.insecure_channel(args.loyalty_grpc_addr, options=options) as channel:
        call = settle_call(promo_pb2_grpc.PromoServiceStub(channel), args)
        try:
            purchase = with_retries(call, token)
        except grpc.RpcError as error:
            print(json.dumps(error_details(error)), file=sys.stderr)
            return 1
    print(json_format.MessageToJson(purchase, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
