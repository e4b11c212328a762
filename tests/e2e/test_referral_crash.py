"""SIGKILL of a real loyalty process during a burst of confirms of referred purchases: the
rewards in the database equal the completed referred purchases (up to the cap), checked in SQL;
confirming the rest afterwards still gives exactly one outcome per purchase.

The kill is made to land inside the confirms' transactions, not merely near them: a test
connection holds the referrer's counter row, so the burst's confirms stop after they have
completed the purchase and before the reward, and the process dies with them all open."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import asyncpg
import grpc

from bench.ports import free_port
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc
from tests.conftest import TEST_ENV
from tests.e2e.processes import ROOT, run, wait_serving
from tests.fixtures.auth import AuthTestServer, TestUser
from tests.fixtures.sync import eventually
from tests.referral_helpers import code_of, set_program, use

CAP = 10
REFEREES = 60
WAITING_ON_LOCKS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def _loyalty_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "loyalty_service"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _books(referrer_id: str) -> dict[str, Any]:
    """What the database says about one referrer's referrals, in one snapshot."""
    conn = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
    try:
        row = await conn.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM referrals r JOIN purchases p USING (purchase_id)"
            "   WHERE r.referrer_id = $1 AND p.status = 'COMPLETED') AS completed,"
            " (SELECT count(*) FROM referrals r"
            "   WHERE r.referrer_id = $1 AND r.status = 'COMPLETED') AS referrals_completed,"
            " (SELECT count(*) FROM referral_rewards w WHERE w.referrer_id = $1) AS outcomes,"
            " (SELECT count(*) FROM referral_rewards w JOIN purchases p USING (purchase_id)"
            "   WHERE w.referrer_id = $1 AND p.status <> 'COMPLETED') AS outcomes_unconfirmed,"
            " (SELECT count(*) FROM referral_rewards w"
            "   WHERE w.referrer_id = $1 AND w.outcome = 'ISSUED') AS issued,"
            " (SELECT rewards_issued FROM referral_codes c WHERE c.user_id = $1) AS counted,"
            " (SELECT count(*) FROM promo_codes c JOIN promo_code_users u USING (code)"
            "   WHERE u.user_id = $1 AND c.description = 'referral reward') AS codes,"
            " (SELECT count(*) FROM outbox o WHERE o.routing_key = 'referral.rewarded'"
            "   AND position(convert_to($1::text, 'UTF8') IN o.payload) > 0) AS events",
            referrer_id,
        )
    finally:
        await conn.close()
    return dict(row)


def _consistent(books: dict[str, Any]) -> None:
    completed = books["completed"]
    assert books["referrals_completed"] == completed
    assert books["outcomes"] == completed, books
    assert books["outcomes_unconfirmed"] == 0, books
    assert books["issued"] == min(completed, CAP), books
    assert books["counted"] == books["issued"] == books["codes"] == books["events"], books


async def _confirm_all(
    stub: promo_pb2_grpc.PromoServiceStub,
    settler: TestUser,
    pairs: list[tuple[TestUser, str]],
    times: int,
) -> list[Any]:
    """Each purchase confirmed `times` times by an admin (as the payment side would)."""
    calls = [
        stub.ConfirmPurchase(
            promo_pb2.ConfirmPurchaseRequest(purchase_id=purchase_id),
            metadata=settler.metadata(),
            timeout=30,
        )
        for _, purchase_id in pairs
        for _ in range(times)
    ]
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
    return results


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        # Small: the machine's Postgres is shared by every test run going on.
        "LOYALTY_DB_POOL_SIZE": "10",
        "LOYALTY_EVENTS_QUEUE": f"{TEST_ENV['LOYALTY_EVENTS_QUEUE']}.referral-crash",
        # The referees name their own addresses (tests/referral_helpers.py), so no referral
        # here is a same-address one held for review.
        "LOYALTY_TRUSTED_PEERS": "127.0.0.1",
    }


async def _started(env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = _loyalty_process(env)
    try:
        await asyncio.to_thread(wait_serving, env["LOYALTY_GRPC_ADDR"], process)
    except AssertionError:
        _, errors = process.communicate(timeout=20)
        raise AssertionError(errors.decode()[-2000:]) from None
    return process


def _stopped(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(20)


async def test_sigkill_during_confirms_keeps_rewards_equal_to_completed_referrals(
    auth_server: AuthTestServer,
) -> None:
    env = {**_env(), "AUTH_GRPC_ADDR": auth_server.address}
    admin, alice = auth_server.token_for(role="admin"), auth_server.token_for()
    referees = [auth_server.token_for() for _ in range(REFEREES)]
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    process = await _started(env)
    try:
        async with grpc.aio.insecure_channel(env["LOYALTY_GRPC_ADDR"]) as channel:
            stub = promo_pb2_grpc.PromoServiceStub(channel)
            admin_stub = promo_pb2_grpc.PromoAdminServiceStub(channel)
            await set_program(admin_stub, admin, max_rewards_per_referrer=CAP)
            code = await code_of(stub, alice)
            purchases = await asyncio.gather(*(use(stub, r, code) for r in referees))
            # The payment side confirms each purchase (a referee's own token cannot).
            settler = auth_server.service_token("purchases:settle")
            pairs = [(settler, p.purchase_id) for p in purchases]
            # Some confirms commit first; then the referrer's counter row is held, so the
            # rest of the burst stops inside its transactions, and the kill lands there.
            assert all(
                isinstance(r, promo_pb2.Purchase)
                for r in await _confirm_all(stub, admin, pairs[:5], 1)
            )
            blocker = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
            held = blocker.transaction()
            await held.start()
            await blocker.execute(
                "SELECT 1 FROM referral_codes WHERE user_id = $1 FOR UPDATE", alice.user_id
            )
            burst = asyncio.ensure_future(_confirm_all(stub, admin, pairs[5:], times=2))

            async def confirms_waiting() -> bool:
                return bool(await blocker.fetchval(WAITING_ON_LOCKS) >= 5)

            await eventually(confirms_waiting, 30, "confirms stopped inside their transactions")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await held.rollback()
            await blocker.close()
            results = await burst
        failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(failed) >= 5
        assert {e.code() for e in failed} <= {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.UNKNOWN,  # a stream reset mid-call
        }
        after_crash = await _books(alice.user_id)
        assert after_crash["completed"] >= 5
        _consistent(after_crash)
        # Whatever the kill cut short is confirmed again (the client retries): one outcome each.
        process = await _started(env)
        async with grpc.aio.insecure_channel(env["LOYALTY_GRPC_ADDR"]) as channel:
            results = await _confirm_all(
                promo_pb2_grpc.PromoServiceStub(channel), admin, pairs, times=2
            )
        assert all(isinstance(r, promo_pb2.Purchase) for r in results)
        final = await _books(alice.user_id)
        assert final["completed"] == REFEREES
        _consistent(final)
    finally:
        _stopped(process)


async def _release_books(referrer_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
    try:
        row = await conn.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM referral_rewards WHERE referrer_id = $1"
            "   AND outcome = 'ISSUED') AS issued,"
            " (SELECT count(*) FROM referral_rewards WHERE referrer_id = $1"
            "   AND outcome = 'PENDING') AS pending,"
            " (SELECT count(*) FROM referral_rewards WHERE referrer_id = $1"
            "   AND outcome = 'PENDING' AND release_at <= now()) AS matured_pending,"
            " (SELECT count(*) FROM promo_codes c JOIN promo_code_users u USING (code)"
            "   WHERE u.user_id = $1 AND c.description = 'referral reward') AS codes,"
            " (SELECT count(*) FROM outbox o WHERE o.routing_key = 'referral.rewarded'"
            "   AND position(convert_to($1::text, 'UTF8') IN o.payload) > 0) AS events",
            referrer_id,
        )
    finally:
        await conn.close()
    return dict(row)


async def _mature(referrer_id: str, limit: int) -> None:
    conn = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
    try:
        await conn.execute(
            "UPDATE referral_rewards SET release_at = now() - interval '1 second'"
            " WHERE purchase_id IN (SELECT purchase_id FROM referral_rewards"
            "   WHERE referrer_id = $1 AND outcome = 'PENDING' AND release_at > now()"
            "   ORDER BY purchase_id LIMIT $2)",
            referrer_id,
            limit,
        )
    finally:
        await conn.close()


async def test_sigkill_during_a_release_burst_keeps_rewards_equal_to_matured_referrals(
    auth_server: AuthTestServer,
) -> None:
    """Rewards held for an hour; some mature and are released; then the outbox is locked so
    the next release burst stops inside its transaction (codes made, events not yet), and
    the process is killed there. Released = codes = events, the rest still PENDING; a new
    process releases them, once."""
    env = {**_env(), "AUTH_GRPC_ADDR": auth_server.address, "SWEEPER_INTERVAL_SECONDS": "0.3"}
    admin, alice = auth_server.token_for(role="admin"), auth_server.token_for()
    referees = [auth_server.token_for() for _ in range(30)]
    await asyncio.to_thread(run, [sys.executable, "-m", "loyalty_service", "migrate"], env)
    process = await _started(env)
    try:
        async with grpc.aio.insecure_channel(env["LOYALTY_GRPC_ADDR"]) as channel:
            stub = promo_pb2_grpc.PromoServiceStub(channel)
            admin_stub = promo_pb2_grpc.PromoAdminServiceStub(channel)
            await set_program(admin_stub, admin, reward_hold_seconds=3600)
            code = await code_of(stub, alice)
            purchases = await asyncio.gather(*(use(stub, r, code) for r in referees))
            pairs = [(r, p.purchase_id) for r, p in zip(referees, purchases, strict=True)]
            assert all(
                isinstance(r, promo_pb2.Purchase) for r in await _confirm_all(stub, admin, pairs, 1)
            )
            await set_program(admin_stub, admin)  # later tests: released at the confirm
        await _mature(alice.user_id, 8)

        async def first_released() -> bool:
            return bool((await _release_books(alice.user_id))["issued"] == 8)

        await eventually(first_released, 30, "the first matured rewards released")
        blocker = await asyncpg.connect(TEST_ENV["LOYALTY_DATABASE_URL"])
        held = blocker.transaction()
        await held.start()
        await blocker.execute("LOCK TABLE outbox IN SHARE MODE")
        await _mature(alice.user_id, 30)

        async def release_waiting() -> bool:
            return bool(await blocker.fetchval(WAITING_ON_LOCKS) >= 1)

        await eventually(release_waiting, 30, "a release stopped inside its transaction")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        await held.rollback()
        await blocker.close()
        after_crash = await _release_books(alice.user_id)
        assert after_crash["issued"] == 8, after_crash
        assert after_crash["codes"] == after_crash["events"] == 8, after_crash
        assert after_crash["pending"] == after_crash["matured_pending"] == 22, after_crash
        process = await _started(env)

        async def all_released() -> bool:
            return bool((await _release_books(alice.user_id))["issued"] == 30)

        await eventually(all_released, 30, "the rest released by the new process")
        final = await _release_books(alice.user_id)
        assert final["codes"] == final["events"] == 30 and final["pending"] == 0, final
    finally:
        _stopped(process)
