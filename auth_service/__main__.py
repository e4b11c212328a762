"""`python -m auth_service [serve|migrate|create-admin --email EMAIL|rotate-key|
create-service-account --name NAME --scope SCOPE [--scope ...]]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from auth_service import app, metrics
from auth_service.config import AuthSettings
from auth_service.domain import check_credentials_input
from auth_service.domain.service_accounts import KNOWN_SCOPES, check_new_account
from auth_service.keys import new_private_pem, signing_key
from auth_service.use_cases.signing_keys import RETIRE_MARGIN_SECONDS, RotationTimedOut
from common import config
from common.access.access_tokens import MIN_REFRESH_INTERVAL
from common.errors import InvalidArgument, ServiceError
from common.processes import eventloop, shutdown
from common.processes import supervisor as workers
from common.rpc.grpc_server import run_until_signal
from common.storage.db import create_pool
from common.storage.migrations import migrate
from common.telemetry import logs, sentry, tracing
from common.telemetry.metrics import serve as serve_metrics

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "auth"
# Server-side functions, one a file, applied as repeatable scripts after the migrations.
FUNCTIONS = Path(__file__).resolve().parent / "store" / "sql"
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


async def create_service_account(settings: AuthSettings, name: str, scopes: list[str]) -> None:
    try:
        # Checked before connecting to anything, like create-admin's input.
        check_new_account(name, scopes)
    except InvalidArgument as error:
        raise SystemExit(f"create-service-account: {error}") from None
    auth = await app.build(settings)
    try:
        created = await auth.service_accounts.create(name, scopes)
    finally:
        await auth.close()
    account = created.account
    print(f"service account {account.name} ({' '.join(account.scopes)})")
    print(f"client_id={account.account_id}")
    print(f"client_secret={created.client_secret}")
    print("the secret is shown this once: only its hash is kept", file=sys.stderr)


async def rotate_key(settings: AuthSettings, pem: str, wait_seconds: float) -> None:
    """Adds the next signing key, makes it current once every auth process publishes it, and
    leaves the old one published until its tokens expire (docs/operations.md, "Key rotation")."""
    try:
        signing_key(pem)
    except ValueError as error:
        raise SystemExit(f"rotate-key: {error}") from None
    pool = await create_pool(settings.auth_database_url, min_size=1, max_size=2)
    try:
        keys = app.signing_keys(settings, pool, None)
        kid = await keys.rotate(pem, wait_seconds, MIN_REFRESH_INTERVAL + 1.0)
        print(
            f"signing key {kid} is current; the previous key retires by itself after"
            f" {settings.auth_access_ttl_seconds + RETIRE_MARGIN_SECONDS:.0f} s"
        )
    except RotationTimedOut as error:
        raise SystemExit(f"rotate-key: {error}; run it again to resume") from None
    finally:
        await pool.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m auth_service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the gRPC server (default)")
    commands.add_parser("migrate", help="create the database if needed and apply migrations")
    admin = commands.add_parser("create-admin", help="create or promote an administrator")
    admin.add_argument("--email", required=True)
    service_account = commands.add_parser(
        "create-service-account", help="create a service account and print its credentials"
    )
    service_account.add_argument("--name", required=True)
    service_account.add_argument(
        "--scope",
        action="append",
        required=True,
        dest="scopes",
        help=f"repeat for several; known: {', '.join(sorted(KNOWN_SCOPES))}",
    )
    rotate = commands.add_parser("rotate-key", help="rotate the JWT signing key, no one logged out")
    rotate.add_argument("--pem-file", default="", help="the new Ed25519 key (default: generate)")
    rotate.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for replicas")
    args = parser.parse_args(argv)
    shutdown.exit_0_on_sigterm()
    settings = config.load(AuthSettings)
    logs.configure("auth", settings.log_level)
    sentry.init(settings.sentry_dsn, "auth")
    tracing.setup("auth")
    if args.command == "migrate":
        applied = eventloop.run(migrate(settings.auth_direct_url, MIGRATIONS, FUNCTIONS))
        print(f"auth: {len(applied)} migration(s) applied")
    elif args.command == "create-admin":
        eventloop.run(create_admin(settings, args.email))
    elif args.command == "create-service-account":
        eventloop.run(create_service_account(settings, args.name, args.scopes))
    elif args.command == "rotate-key":
        pem = Path(args.pem_file).read_text() if args.pem_file else new_private_pem()
        eventloop.run(rotate_key(settings, pem, args.timeout))
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
