"""`python -m auth_service [serve|migrate|create-admin --email EMAIL]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from auth_service import app, metrics
from auth_service.config import AuthSettings
from auth_service.domain import check_credentials_input
from common import config
from common.errors import InvalidArgument, ServiceError
from common.processes import eventloop, shutdown
from common.processes import supervisor as workers
from common.rpc.grpc_server import run_until_signal
from common.storage.migrations import migrate
from common.telemetry import logs, sentry, tracing
from common.telemetry.metrics import serve as serve_metrics

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "auth"
log = logs.get_logger("auth")


async def serve(settings: AuthSettings) -> None:
    auth = await app.build(settings)
    await app.wait_for_redis(auth)
    serve_metrics(workers.metrics_address(settings.auth_metrics_addr), metrics.COLLECTORS)
    port = await auth.server.start()
    log.info("serving", address=settings.auth_grpc_addr, port=port)
    await run_until_signal(auth.server, auth.loops, settings.shutdown_grace, auth.close)


async def create_admin(settings: AuthSettings, email: str) -> None:
    password = os.environ.get("AUTH_ADMIN_PASSWORD", "")
    if not password:
        raise SystemExit("AUTH_ADMIN_PASSWORD must be set to the new administrator's password")
    try:
        # Checked before connecting to anything: a weak password is one line, not a traceback.
        check_credentials_input(email, password, settings.auth_password_min_length)
    except InvalidArgument as error:
        raise SystemExit(f"create-admin: {error}") from None
    auth = await app.build(settings)
    try:
        user = await auth.accounts.create_admin(email, password)
        print(f"admin {user.email} ({user.user_id}); any earlier sessions of it are revoked")
    except ServiceError as error:
        raise SystemExit(f"create-admin: {error.message}") from None
    finally:
        await auth.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m auth_service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server (default)")
    commands.add_parser("migrate", help="create the database if needed and apply migrations")
    admin = commands.add_parser("create-admin", help="create or promote an administrator")
    admin.add_argument("--email", required=True)
    args = parser.parse_args(argv)
    shutdown.exit_0_on_sigterm()
    settings = config.load(AuthSettings)
    logs.configure("auth", settings.log_level)
    sentry.init(settings.sentry_dsn, "auth")
    tracing.setup("auth")
    if args.command == "migrate":
        applied = eventloop.run(migrate(settings.auth_direct_url, MIGRATIONS))
        print(f"auth: {len(applied)} migration(s) applied")
    elif args.command == "create-admin":
        eventloop.run(create_admin(settings, args.email))
    else:
        service = workers.Service(
            "auth_service",
            settings.auth_workers,
            settings.auth_grpc_addr,
            settings.auth_metrics_addr,
            settings.shutdown_grace,
        )
        workers.serve(service, lambda: eventloop.run(serve(settings)))


if __name__ == "__main__":
    main(sys.argv[1:])
