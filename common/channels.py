"""gRPC client channels: one target may name several replicas, balanced round robin, with
gRPC's own retry of UNAVAILABLE for the methods that are safe to send twice.

A target is anything gRPC resolves: `127.0.0.1:50052`, `ipv4:127.0.0.1:50052,127.0.0.1:50062`,
or `dns:///loyalty:50052` (every address the name resolves to, as compose's scaled services)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import grpc

# A retried call waits 50 ms, 100 ms, 200 ms, 400 ms before its attempts 2 to 5 (with gRPC's
# jitter): long enough for a killed replica's connection to fail and the balancer to skip it.
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
EVERY_METHOD: list[dict[str, str]] = [{}]  # service config's name that matches every method


def method_names(full_methods: Iterable[str]) -> list[dict[str, str]]:
    """`/pkg.Service/Method` strings as service config names."""
    names = []
    for full in full_methods:
        service, _, method = full.strip("/").partition("/")
        names.append({"service": service, "method": method})
    return names


def service_config(retried: list[dict[str, str]]) -> str:
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if retried:
        config["methodConfig"] = [{"name": retried, "retryPolicy": RETRY_POLICY}]
    return json.dumps(config)


def open_channel(target: str, retried: list[dict[str, str]] | None = None) -> grpc.aio.Channel:
    """A channel to every backend of `target`, retrying UNAVAILABLE for `retried` methods
    (`EVERY_METHOD` when every call sent on it is idempotent)."""
    options = [
        ("grpc.service_config", service_config(retried or [])),
        ("grpc.enable_retries", 1),
    ]
    return grpc.aio.insecure_channel(target, options=options)
