"""The promo spike as users make it: uses of ONE code arriving at a constant rate, open loop.

    .venv/bin/python -m bench.spike [--rate 1000] [--seconds 30]

Open loop: each arrival is scheduled by the clock (arrival i at start + i/rate) and sent then,
whatever the answers to earlier ones are doing, so a slow system builds a queue instead of
slowing the arrivals down; latency counts from the scheduled time, so a queue shows. A closed
loop (bench.load.drive) waits for an answer before it sends again and would hide exactly that.

The code is capped with room to spare; each user has a per-user limit below their number of
attempts, so every user must end with exactly `limit` uses and the rest refused with
PROMO_CODE_USER_LIMIT_REACHED. Exact means: the successes, the code's report (uses taken, uses
left, PENDING purchases, rejections) and every user's count agree to the last use.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from bench.load import percentile
from bench.loyalty_bench import PASSWORD, Meta, bearer, make_admin
from bench.spread import spread_stub
from bench.system import System, running
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from protogen.loyalty.promo.v1 import promo_pb2, promo_pb2_grpc

USERS = 200
LIMIT_REASON = "PROMO_CODE_USER_LIMIT_REACHED"


@dataclass(frozen=True)
class Spike:
    rate: float
    seconds: float
    sent: int
    taken: int
    refused: int
    errors: int
    p50_ms: float
    p99_ms: float
    exact: bool
    checks: str  # what was compared, and any mismatch

    def line(self) -> str:
        return (
            f"spike {self.rate:.0f}/s for {self.seconds:.0f} s: {self.sent} sent, {self.taken}"
            f" taken, {self.refused} refused, {self.errors} errors, p50 {self.p50_ms:.1f} ms,"
            f" p99 {self.p99_ms:.1f} ms, exact {self.exact} ({self.checks})"
        )


Outcome = str  # "taken", "refused", or "error: …"


async def open_loop(
    call: Callable[[int], Awaitable[Outcome]], rate: float, seconds: float
) -> tuple[list[float], list[Outcome]]:
    """Sends arrival i at start + i/rate (all arrivals due by now, on each wake-up), and
    returns each one's latency from its scheduled time, and its outcome."""
    total = int(rate * seconds)
    latencies: list[float] = [0.0] * total
    outcomes: list[Outcome] = [""] * total
    start = time.perf_counter() + 0.05

    async def one(i: int, due: float) -> None:
        outcomes[i] = await call(i)
        latencies[i] = (time.perf_counter() - due) * 1000

    tasks = []
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies, outcomes


async def _patiently(call: Callable[[], Awaitable[Any]], tolerated: grpc.StatusCode) -> Any:
    """`call()`, again while it is UNAVAILABLE (a PostgreSQL shared with other work can run out
    of connections for a while); an answer with the `tolerated` code counts as done."""
    for attempt in range(20):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() == tolerated:
                return None
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                raise
            await asyncio.sleep(0.5)


async def _user(auth: auth_pb2_grpc.AuthServiceStub, index: int) -> Meta:
    email = f"spike-{index}@bench.example"
    register = auth_pb2.RegisterRequest(email=email, password=PASSWORD)
    await _patiently(lambda: auth.Register(register), grpc.StatusCode.ALREADY_EXISTS)
    login = auth_pb2.LoginRequest(email=email, password=PASSWORD)
    pair = await _patiently(lambda: auth.Login(login), grpc.StatusCode.OK)
    return bearer(pair.access_token)


async def _setup(system: System) -> tuple[Meta, list[Meta]]:
    """An admin's credentials, and the users', ten sign-ups at a time."""
    async with grpc.aio.insecure_channel(system.env["AUTH_GRPC_ADDR"]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        make_admin(system)
        login = auth_pb2.LoginRequest(email="admin@bench.example", password=PASSWORD)
        admin = bearer((await auth.Login(login)).access_token)
        users = []
        for start in range(0, USERS, 10):
            users += await asyncio.gather(*(_user(auth, i) for i in range(start, start + 10)))
    return admin, users


async def _create_code(admin_stub: Any, admin: Meta, max_uses: int, per_user: int) -> str:
    spec = promo_pb2.PromoCodeSpec(
        percent_off=10, all_users=True, max_uses=max_uses, per_user_limit=per_user
    )
    created: promo_pb2.PromoCode = await admin_stub.CreatePromoCode(spec, metadata=admin)
    return created.code


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


def _outcome(error: grpc.aio.AioRpcError) -> Outcome:
    if _reason(error) == LIMIT_REASON:
        return "refused"
    return f"error: {error.code().name} {_reason(error)}"


def _checks(
    report: promo_pb2.PromoCodeReport,
    taken_by_user: Counter[int],
    attempts_by_user: Counter[int],
    max_uses: int,
    per_user: int,
    refused: int,
) -> list[str]:
    """Every way the spike's books could disagree; empty when exact. The server's own books
    must always agree (uses taken = PENDING purchases = cap - uses left, no user past the
    limit); the answers can be held to them only when every call was answered (a call the
    client gave up on may still have taken its use)."""
    taken = sum(taken_by_user.values())
    held = report.purchases_by_status.get("PENDING", 0)
    wrong = []
    if not report.uses_taken == held == max_uses - report.uses_left:
        wrong.append(f"uses taken {report.uses_taken}, PENDING {held}, left {report.uses_left}")
    if taken > report.uses_taken or any(n > per_user for n in taken_by_user.values()):
        wrong.append(f"{taken} answered taken against {report.uses_taken} in the books")
    if sum(attempts_by_user.values()) == taken + refused:  # every call answered
        if report.uses_taken != taken:
            wrong.append(f"uses taken {report.uses_taken} != {taken} answered")
        if report.rejections_by_reason.get(LIMIT_REASON, 0) != refused:
            wrong.append(f"limit rejections {report.rejections_by_reason.get(LIMIT_REASON, 0)}")
        short = [u for u, n in attempts_by_user.items() if taken_by_user[u] != min(n, per_user)]
        if short:
            wrong.append(f"{len(short)} users not at exactly min(attempts, {per_user})")
    return wrong


async def _settled(read: Callable[[], Awaitable[promo_pb2.PromoCodeReport]]) -> Any:
    """The code's report once calls the client gave up on have finished on the server (two
    reads a second apart agree), so that its counts are read at rest."""
    report = await read()
    for _ in range(60):
        await asyncio.sleep(1)
        again = await read()
        if again == report:
            return again
        report = again
    return report


async def measure(system: System, rate: float, seconds: float) -> Spike:
    admin, users = await _setup(system)
    promo, channels = spread_stub(system.env["LOYALTY_GRPC_ADDR"], promo_pb2_grpc.PromoServiceStub)
    admin_stub, admin_channels = spread_stub(
        system.env["LOYALTY_GRPC_ADDR"], promo_pb2_grpc.PromoAdminServiceStub
    )
    sent = int(rate * seconds)
    attempts_each = -(-sent // USERS)
    per_user = max(1, attempts_each * 5 // 6)  # each user is refused about 1 in 6 attempts
    max_uses = USERS * per_user + 1000  # the cap has room: only per-user limits refuse
    code = await _create_code(admin_stub, admin, max_uses, per_user)

    async def use(i: int) -> Outcome:
        request = promo_pb2.UsePromoCodeRequest(
            code=code, tariff_id="monthly", request_id=f"spike-{i}"
        )
        try:
            await promo.UsePromoCode(request, metadata=users[i % USERS], timeout=30)
        except grpc.aio.AioRpcError as error:
            return _outcome(error)
        return "taken"

    try:
        latencies, outcomes = await open_loop(use, rate, seconds)
        report = await _settled(
            lambda: admin_stub.GetPromoCodeReport(
                promo_pb2.GetPromoCodeReportRequest(code=code), metadata=admin
            )
        )
    finally:
        for channel in [*channels, *admin_channels]:
            await channel.close()
    taken_by_user = Counter(i % USERS for i, o in enumerate(outcomes) if o == "taken")
    attempts_by_user = Counter(i % USERS for i in range(sent))
    refused = outcomes.count("refused")
    errors = [o for o in outcomes if o.startswith("error")]
    wrong = _checks(report, taken_by_user, attempts_by_user, max_uses, per_user, refused)
    checks = "; ".join(wrong) if wrong else (
        f"uses taken = PENDING purchases = {report.uses_taken} = cap {max_uses} - uses left,"
        f" no user past {per_user}"
        + (f", every one of {USERS} at exactly {per_user}" if not errors else "")
    )  # fmt: skip
    if errors:
        checks += f"; errors: {dict(Counter(errors))}"
    return Spike(
        rate,
        seconds,
        sent,
        sum(taken_by_user.values()),
        refused,
        len(errors),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        not wrong,
        checks,
    )


def table(result: Spike) -> list[str]:
    """The spike's rows for docs/performance.md."""
    r = result
    return [
        "| spike: UsePromoCode on one code, open loop | figure | target | met |",
        "|---|---|---|---|",
        f"| p99 from the scheduled arrival, {r.rate:.0f}/s for {r.seconds:.0f} s ({r.sent} uses)"
        f" | p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms | p99 <= 150 ms |"
        f" {'yes' if r.p99_ms <= 150 else '**no**'} |",
        f"| errors | {r.errors} | 0 | {'yes' if r.errors == 0 else '**no**'} |",
        f"| exact ({r.taken} taken, {r.refused} refused at the per-user limit) | {r.checks} |"
        f" limits exact | {'yes' if r.exact else '**no**'} |",
    ]


def failed(error: BaseException) -> list[str]:
    """The spike's rows when it could not run to the end (say, PostgreSQL out of connections)."""
    return [
        "| spike: UsePromoCode on one code, open loop | figure | target | met |",
        "|---|---|---|---|",
        f"| 1000/s for 30 s | not measured: {type(error).__name__} | p99 <= 150 ms, no errors,"
        " limits exact | **no** |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with running(["auth_service", "loyalty_service"]) as system:
        print(asyncio.run(measure(system, args.rate, args.seconds)).line())


if __name__ == "__main__":
    main()
