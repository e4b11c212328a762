"""Gateway settings, read once from the environment at start."""

from __future__ import annotations

from pydantic import PositiveInt

from common.access.trust import TrustedNetworks
from common.config import BaseServiceSettings, GrpcTarget, HostPort
from common.processes import supervisor as workers


class GatewaySettings(BaseServiceSettings):
    gateway_http_addr: HostPort = "127.0.0.1:8080"
    # Prometheus /metrics; empty turns it off.
    gateway_metrics_addr: str = "127.0.0.1:9103"
    # Worker processes behind the one port (common.processes.supervisor).
    gateway_workers: PositiveInt = workers.DEFAULT_COUNT
    # gRPC targets: HOST:PORT, or several replicas (`ipv4:A:P,B:P`, `dns:///loyalty:50052`).
    auth_grpc_addr: GrpcTarget = "127.0.0.1:50051"
    loyalty_grpc_addr: GrpcTarget = "127.0.0.1:50052"
    # Every backend call gets this deadline; a hung backend answers 504 after it.
    gateway_backend_timeout_seconds: float = 5.0
    # Larger than any body the OpenAPI document allows (its longest lists, every character
    # JSON-escaped), so only a body no schema permits meets the 413.
    gateway_max_body_bytes: int = 1024 * 1024
    # A CSV import's body (10,000 codes fit), and its deadline: a code
    # per row takes a few milliseconds, 10,000 rows about half a minute.
    gateway_max_import_bytes: int = 4_000_000  # under gRPC's 4 MiB message limit
    gateway_import_timeout_seconds: float = 300.0
    # Proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For is believed;
    # empty: nobody's, every client is judged by its own connection's address.
    gateway_trusted_proxies: TrustedNetworks = ""
    # The key the gateway signs the client's address with and the servers check it by
    # (common/access/client_address.py); the same on the gateway and every auth and loyalty
    # replica. Empty: off (`make run` makes a random one per run when it is unset).
    client_address_key: str = ""
