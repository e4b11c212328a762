"""The sync with real processes: a loyalty killed with SIGKILL mid-stream loses nothing, and
`resync` rebuilds a lost mirror."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg

from bench.ports import free_port
from protogen.loyalty.auth.v1 import auth_pb2
from tests.conftest import TEST_ENV
from tests.e2e.processes import ROOT, run
from tests.fixtures.auth import PASSWORD, AuthTestServer
from tests.fixtures.sync import eventually, has_queue_consumer

LOYALTY_DSN = TEST_ENV["LOYALTY_DATABASE_URL"]


async def _mirror(ids: list[str]) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(LOYALTY_DSN)
    try:
        rows = await conn.fetch(
            "SELECT user_id::text, status, version FROM users WHERE user_id = ANY($1::uuid[])", ids
        )
    finally:
        await conn.close()
    return {r["user_id"]: (r["status"], r["version"]) for r in rows}


async def _truth(auth: AuthTestServer, ids: list[str]) -> dict[str, tuple[str, int]]:
    rows = await auth.app.pool.fetch(
        "SELECT user_id::text, status, version FROM users WHERE user_id = ANY($1::uuid[])", ids
    )
    return {r["user_id"]: (r["status"], r["version"]) for r in rows}


def _loyalty_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "loyalty_service"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_mid_stream_loses_nothing(synced_relay: AuthTestServer) -> None:
    auth = synced_relay
    admin = await auth.new_admin()
    ids = [(await auth.new_user()).user_id for _ in range(10)]
    queue = f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.killed"
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": auth.address,
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_EVENTS_QUEUE": queue,
    }
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    loyalty = _loyalty_process(env)
    try:
        await eventually(lambda: has_queue_consumer(queue), 30, "consumer up")
        statuses = [auth_pb2.USER_STATUS_BLOCKED, auth_pb2.USER_STATUS_ACTIVE]
        for round_ in range(30):
            await asyncio.gather(
                *(
                    auth.admin.SetUserStatus(
                        auth_pb2.SetUserStatusRequest(user_id=i, status=statuses[round_ % 2]),
                        metadata=admin.metadata(),
                    )
                    for i in ids
                )
            )
            if round_ == 10:
                loyalty.send_signal(signal.SIGKILL)
                loyalty.wait(10)
        loyalty = _loyalty_process(env)
        expected = await _truth(auth, ids)
        assert {v for _, v in expected.values()} == {31}

        async def caught_up() -> bool:
            return await _mirror(ids) == expected

        await eventually(caught_up, 60, "the restarted loyalty applied everything")
    finally:
        loyalty.terminate()
        loyalty.wait(20)


async def test_resync_rebuilds_a_lost_mirror(synced_relay: AuthTestServer) -> None:
    auth = synced_relay
    admin = await auth.new_admin()
    user = await auth.new_user()
    await auth.admin.SetUserStatus(
        auth_pb2.SetUserStatusRequest(user_id=user.user_id, status=auth_pb2.USER_STATUS_BLOCKED),
        metadata=admin.metadata(),
    )
    conn = await asyncpg.connect(LOYALTY_DSN)
    try:
        await conn.execute("DELETE FROM users WHERE user_id = $1", user.user_id)  # "lost"
    finally:
        await conn.close()
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": auth.address,
        "LOYALTY_RESYNC_EMAIL": admin.email,
        "LOYALTY_RESYNC_PASSWORD": PASSWORD,
    }
    out = await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "resync"], env)
    assert "users seen" in out
    assert (await _mirror([user.user_id]))[user.user_id] == ("BLOCKED", 2)
    again = await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "resync"], env)
    assert ", 0 mirror rows updated" in again
    missing = {k: v for k, v in env.items() if k != "LOYALTY_RESYNC_PASSWORD"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "loyalty_service", "resync"],
        env=missing,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode != 0 and "LOYALTY_RESYNC_PASSWORD" in done.stderr
