"""gRPC client channels: one target may name several replicas, balanced round robin, with
gRPC's own retry of UNAVAILABLE for the methods that are safe to send twice.

A target is anything gRPC resolves: `127.0.0.1:50052`, `ipv4:127.0.0.1:50052,127.0.0.1:50062`,
or `dns:///loyalty:50052` (every address the name resolves to, as compose's scaled services)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import grpc

# A retried call waits 50 ms, 100 ms, 200 ms, 400 ms before its attempts 2 to 5 (with gRPC's
# jitter): long enough for a killed replica's connection to fail and the balancer to skip it.
# CANCELLED too: a client that cancels its own call never sees its status retried, so a
# CANCELLED status received is the server's doing (a replica stopping or dying mid-call).
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
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


def open_channel(
    target: str,
    retried: list[dict[str, str]] | None = None,
    own_connections: bool = False,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to every backend of `target`, retrying UNAVAILABLE for `retried` methods
    (`EVERY_METHOD` when every call sent on it is idempotent). `own_connections`: not shared
    with other channels to the same target (gRPC shares them by default)."""
    options: list[tuple[str, str | int]] = [
        ("grpc.service_config", service_config(retried or [])),
        ("grpc.enable_retries", 1),
        # A connection refused while a backend (or one of its workers) was still starting
        # is tried again within half a second, not after gRPC's default backoff of up to two
        # minutes, during which every call on the channel would fail at once.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
    ]
    if own_connections:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.aio.insecure_channel(
        target, options=options, interceptors=list(interceptors) or None
    )


# A service's workers share one port and the kernel gives each new connection to one of them
# (SO_REUSEPORT), so the calls of one connection all go to one worker. A client that sends a
# lot spreads its calls over this many connections: with 2 workers, the chance that every one
# of 8 lands on the same worker is 1 in 128.
CONNECTIONS_PER_TARGET = 8


def open_channels(
    target: str,
    retried: list[dict[str, str]] | None = None,
    count: int = CONNECTIONS_PER_TARGET,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> list[grpc.aio.Channel]:
    """`count` channels to `target`, each with connections of its own."""
    return [open_channel(target, retried, True, interceptors) for _ in range(count)]
