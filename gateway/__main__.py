"""`python -m gateway`: the HTTP server (uvicorn), stopped gracefully on SIGTERM or Ctrl-C."""

from __future__ import annotations

import uvicorn

from common import config, logs, metrics, sentry, shutdown, tracing
from gateway.app import MAX_REQUEST_HEAD_BYTES, create_app
from gateway.config import GatewaySettings


def main() -> None:
    shutdown.exit_0_on_sigterm()
    settings = config.load(GatewaySettings)
    logs.configure("gateway", settings.log_level)
    sentry.init(settings.sentry_dsn, "gateway")
    tracing.setup("gateway")
    metrics.serve(settings.gateway_metrics_addr, metrics.GATEWAY)
    host, _, port = settings.gateway_http_addr.rpartition(":")
    server = uvicorn.Server(
        uvicorn.Config(
            tracing.asgi(create_app(settings)),
            host=host,
            port=int(port),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace),
            lifespan="on",
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            # The app itself decides whose X-Forwarded-For to believe (GATEWAY_TRUSTED_PROXIES);
            # uvicorn's own handling would believe 127.0.0.1's by default.
            proxy_headers=False,
        )
    )
    logs.get_logger("gateway").info("serving", address=settings.gateway_http_addr)
    server.run()


if __name__ == "__main__":
    main()
