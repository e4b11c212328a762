"""`python -m loyalty_service [serve|migrate]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import config
from common.processes import eventloop, shutdown
from common.processes import supervisor as workers
from common.rpc.grpc_server import run_until_signal
from common.storage.db import create_pool
from common.storage.migrations import migrate
from common.telemetry import logs, sentry, tracing
from common.telemetry.metrics import serve as serve_metrics
from loyalty_service import app, metrics
from loyalty_service.config import LoyaltySettings
from loyalty_service.jobs.resync import resync
from loyalty_service.jwks import load_keys

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "loyalty"
# The server-side functions: repeatable scripts, applied after the migrations when changed.
FUNCTIONS = Path(__file__).resolve().parent / "store" / "sql"
log = logs.get_logger("loyalty")


async def serve(settings: LoyaltySettings) -> None:
    loyalty = await app.build(settings)
    await load_keys(loyalty.verifier, give_up_after=30)
    serve_metrics(workers.metrics_address(settings.loyalty_metrics_addr), metrics.COLLECTORS)
    port = await loyalty.server.start()
    log.info("serving", address=settings.loyalty_grpc_addr, port=port)
    await run_until_signal(loyalty.server, loyalty.loops, settings.shutdown_grace, loyalty.close)


async def run_resync(settings: LoyaltySettings) -> None:
    pool = await create_pool(
        settings.loyalty_database_url, max_size=4, pooler=settings.loyalty_database_pooler
    )
    try:
        report = await resync(settings, pool)
    finally:
        await pool.close()
    print(f"resync: {report.seen} users seen, {report.applied} mirror rows updated")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m loyalty_service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server and background loops (default)")
    commands.add_parser("migrate", help="create the database if needed and apply migrations")
    commands.add_parser("resync", help="bring the users mirror up to date from auth's user list")
    args = parser.parse_args(argv)
    shutdown.exit_0_on_sigterm()
    settings = config.load(LoyaltySettings)
    logs.configure("loyalty", settings.log_level)
    sentry.init(settings.sentry_dsn, "loyalty")
    tracing.setup("loyalty")
    if args.command == "migrate":
        applied = eventloop.run(migrate(settings.loyalty_direct_url, MIGRATIONS, FUNCTIONS))
        print(f"loyalty: {len(applied)} migration(s) applied")
    elif args.command == "resync":
        eventloop.run(run_resync(settings))
    else:
        service = workers.Service(
            "loyalty_service",
            settings.loyalty_workers,
            settings.loyalty_grpc_addr,
            settings.loyalty_metrics_addr,
            settings.shutdown_grace,
        )
        workers.serve(service, lambda: eventloop.run(serve(settings)))


if __name__ == "__main__":
    main(sys.argv[1:])
