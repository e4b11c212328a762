"""`python -m gateway`: the HTTP server (uvicorn), stopped gracefully on SIGTERM or Ctrl-C;
with `GATEWAY_WORKERS` above 1, that many of them on one port (common.processes.supervisor)."""

from __future__ import annotations

import socket

import uvicorn

from common import config
from common.processes import shutdown
from common.processes import supervisor as workers
from common.telemetry import logs, sentry, tracing
from common.telemetry.metrics import serve as serve_metrics
from gateway import http_server, metrics
from gateway.app import create_app
from gateway.config import GatewaySettings


def _shared_socket(host: str, port: int) -> socket.socket:
    """The worker's own listening socket on the port its siblings share. Ours rather than
    uvicorn's `--workers`, whose workers carry no index to find their metrics port by."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    sock.set_inheritable(True)
    return sock


def serve(settings: GatewaySettings) -> None:
    serve_metrics(workers.metrics_address(settings.gateway_metrics_addr), metrics.COLLECTORS)
    host, _, port = settings.gateway_http_addr.rpartition(":")
    server = uvicorn.Server(
        http_server.config(
            tracing.asgi(create_app(settings)),
            host,
            int(port),
            loop="uvloop",
            timeout_graceful_shutdown=int(settings.shutdown_grace),
        )
    )
    logs.get_logger("gateway").info("serving", address=settings.gateway_http_addr)
    sockets = [_shared_socket(host, int(port))] if workers.shares_port() else None
    server.run(sockets=sockets)


def main() -> None:
    shutdown.exit_0_on_sigterm()
    settings = config.load(GatewaySettings)
    logs.configure("gateway", settings.log_level)
    sentry.init(settings.sentry_dsn, "gateway")
    # The gateway's backend channels are traced only for sampled requests (gateway.backends).
    tracing.setup("gateway", instrument_clients=False)
    service = workers.Service(
        "gateway",
        settings.gateway_workers,
        settings.gateway_http_addr,
        settings.gateway_metrics_addr,
        settings.shutdown_grace,
    )
    workers.serve(service, lambda: serve(settings))


if __name__ == "__main__":
    main()
