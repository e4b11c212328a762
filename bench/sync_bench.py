"""Status sync: the delay from SetUserStatus to loyalty refusing the user, and how fast a
backlog of events drains.

    .venv/bin/python -m bench.sync_bench [--changes 200] [--backlog 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import grpc

from bench.load import percentile
from bench.loyalty_bench import PASSWORD, bearer, make_admin, tokens
from bench.system import ROOT, System, _wait_serving, bench_env, running
from common.storage.migrations import drop_database
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.events.v1 import events_pb2
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

BLOCKED, ACTIVE = auth_pb2.USER_STATUS_BLOCKED, auth_pb2.USER_STATUS_ACTIVE


async def _refusal_delays(system: System, changes: int) -> list[float]:
    async with (
        grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as auth_channel,
        grpc.aio.insecure_channel(system.env["LOYALTY_GRPC_ADDR"]) as loyalty_channel,
    ):
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        users = auth_pb2_grpc.UserAdminServiceStub(auth_channel)
        promo_admin = promo_pb2_grpc.PromoAdminServiceStub(loyalty_channel)
        make_admin(system)
        pair = await auth.Login(
            auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        )
        admin = bearer(pair.access_token)
        spec = promo_pb2.PromoCodeSpec(percent_off=1, all_users=True, per_user_limit=0)
        code = (await promo_admin.CreatePromoCode(spec, metadata=admin)).code
        await tokens(auth, 1)
        listed = await users.ListUsers(auth_pb2.ListUsersRequest(), metadata=admin)
        subject = next(u.user_id for u in listed.users if u.role != auth_pb2.ROLE_ADMIN)
        apply = promo_pb2.AdminApplyPromoCodeRequest(
            code=code, tariff_id="monthly", user_ids=[subject]
        )
        delays = []
        for index in range(changes):
            target = BLOCKED if index % 2 == 0 else ACTIVE
            request = auth_pb2.SetUserStatusRequest(user_id=subject, status=target)
            started = time.perf_counter()
            await users.SetUserStatus(request, metadata=admin)
            while True:
                outcome = (await promo_admin.AdminApplyPromoCode(apply, metadata=admin)).results[0]
                refused = outcome.reason == "USER_BLOCKED"
                if refused == (target == BLOCKED):
                    break
                await asyncio.sleep(0.001)
            delays.append(time.perf_counter() - started)
        return delays


def _events(count: int) -> list[tuple[str, str, str, bytes]]:
    rows = []
    for _ in range(count):
        user_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
        event = events_pb2.UserEvent(event_id=event_id, user_id=user_id, status=BLOCKED, version=1)
        rows.append((event_id, user_id, "user.status_changed", event.SerializeToString()))
    return rows


@contextmanager
def _process(module: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


async def _backlog(auth_db: asyncpg.Connection, events: list[tuple[str, str, str, bytes]]) -> None:
    """The events in auth's outbox in one transaction, and the relays woken as auth's own
    writes wake them."""
    async with auth_db.transaction():
        await auth_db.copy_records_to_table(
            "outbox",
            records=events,
            columns=["event_id", "user_id", "routing_key", "payload"],
        )
        await auth_db.execute("SELECT pg_notify('outbox', '')")


async def _mirrored(loyalty_db: asyncpg.Connection, count: int) -> None:
    while await loyalty_db.fetchval("SELECT count(*) FROM users") < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _drain_rate(backlog: int) -> float:
    """Events per second from a backlog's commit in auth's outbox to the last of them stored in
    loyalty's mirror. One event goes through first: the clock starts only once both processes
    run, the relays are connected and loyalty's queue is bound, so start-up is not timed (nor,
    when the processes start slowly, a backlog already drained before the clock starts)."""
    env = bench_env()
    for module in ("auth_service", "loyalty_service"):
        command = [sys.executable, "-m", module, "migrate"]
        await asyncio.to_thread(subprocess.run, command, env=env, check=True, cwd=ROOT)
    try:
        with _process("auth_service", env), _process("loyalty_service", env):
            await asyncio.to_thread(_wait_serving, env["LOYALTY_GRPC_ADDR"])
            auth_db = await asyncpg.connect(env["AUTH_DATABASE_URL"])
            loyalty_db = await asyncpg.connect(env["LOYALTY_DATABASE_URL"])
            await _backlog(auth_db, _events(1))
            await asyncio.wait_for(_mirrored(loyalty_db, 1), 60)
            events = _events(backlog)
            await _backlog(auth_db, events)
            # PostgreSQL's clock at both ends, so polling slowly (and cheaply) loses nothing:
            # a mirror row's updated_at is when the statement that stored it began.
            started = await auth_db.fetchval("SELECT clock_timestamp()")
            await _mirrored(loyalty_db, backlog + 1)
            ended = await loyalty_db.fetchval("SELECT max(updated_at) FROM users")
            elapsed: float = (ended - started).total_seconds()
            await auth_db.close()
            await loyalty_db.close()
        return backlog / elapsed
    finally:
        for variable in ("AUTH_DATABASE_URL", "LOYALTY_DATABASE_URL"):
            await drop_database(env[variable])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service"]) as system:
        delays = asyncio.run(_refusal_delays(system, args.changes))
    p50, p99 = (percentile(delays, share) * 1000 for share in (0.5, 0.99))
    print(f"SetUserStatus -> loyalty refuses ({len(delays)}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    rate = asyncio.run(_drain_rate(args.backlog))
    print(f"backlog of {args.backlog} events drained at {rate:.0f} events/s")


if __name__ == "__main__":
    main()
