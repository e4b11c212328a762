"""`make drills`: each drill takes a dependency away (or kills a replica) under a steady stream
of uses through the gateway, then checks that nothing was lost; prints a table, and exits 1 on
any INTERNAL (or other unexpected answer), counter mismatch, revoked token accepted, or lost
event. Every service of the machine is brought back up at the end, whatever happened.

Besides the dependencies: a worker of loyalty SIGKILLed (its supervisor starts a new one), a
loyalty replica SIGKILLed during a burst of 500 uses (every one must be answered 200: the
gateway retries a use with its request id on the other replica; the launcher brings the replica
back), the edge in front of loyalty#1 (HAProxy) SIGKILLed the same way, the JWT signing key
rotated across both auth replicas with `rotate-key` while fresh logins keep calling (no valid
token refused), and the whole system run again through a PgBouncer in transaction mode."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

from bench.drills import checks, pooler, services, system
from bench.drills.load import Call, RevokedProbe, Traffic, User

PASSWORD = "drill password 1"
STEADY_S = 2.0  # traffic before the fault
AFTER_S = 3.0  # and after the service is back
Fault = Callable[["Drills"], Awaitable[float]]  # returns when the service was back


@dataclass
class Outcome:
    name: str
    ok: int
    unavailable: int
    other: Counter[int]
    recover_s: float
    counters_equal: bool
    events_lost: int
    revoked_accepted: int
    every_use_ok: bool = False  # a drill whose every use must be answered 200 at once

    @property
    def passed(self) -> bool:
        unexpected = {status for status in self.other if status != 504}
        return (
            not unexpected
            and not (self.every_use_ok and (self.unavailable or self.other))
            and self.counters_equal
            and self.events_lost == 0
            and self.revoked_accepted == 0  # -1: the probe got no answer at all
        )


@dataclass
class Drills:
    running: system.System
    http: httpx.AsyncClient
    admin: User
    traffic: Traffic
    probe: RevokedProbe
    status_users: list[str]
    # Seconds from `rabbitmqctl start_app` to loyalty's mirror equal to auth's users.
    converged_s: float = 0.0


async def _login(http: httpx.AsyncClient, email: str) -> tuple[User, str]:
    answer = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    answer.raise_for_status()
    pair = answer.json()
    me = await http.get(
        "/v1/promocodes/active", headers={"authorization": f"Bearer {pair['accessToken']}"}
    )
    me.raise_for_status()
    return User(_subject(pair["accessToken"]), pair["accessToken"]), pair["refreshToken"]


def _subject(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def _register(http: httpx.AsyncClient, tag: str) -> str:
    email = f"{tag}-{system.RUN}@example.com"
    answer = await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    answer.raise_for_status()
    return email


def _create_admin(email: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "auth_service", "create-admin", "--email", email],
        env={**os.environ, **system.ENV, "AUTH_ADMIN_PASSWORD": PASSWORD},
        cwd=system.ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )


async def prepare(running: system.System, http: httpx.AsyncClient, round_: str = "") -> Drills:
    """Its admin, a revoked token, a code, buyers and users to block; `round_` tells a second
    system on the same databases (the PgBouncer round) from the first."""
    for tag in ("admin", "revoked"):
        await asyncio.to_thread(_create_admin, f"{tag}{round_}-{system.RUN}@example.com")
    admin, _ = await _login(http, f"admin{round_}-{system.RUN}@example.com")
    revoked, refresh = await _login(http, f"revoked{round_}-{system.RUN}@example.com")
    (await http.post("/v1/auth/logout", json={"refreshToken": refresh})).raise_for_status()
    code = f"DRILL{round_.upper()}{os.getpid()}"
    spec = {"code": code, "percentOff": 10, "allUsers": True, "perUserLimit": 0}
    (await http.post("/v1/admin/promocodes", json=spec, headers=admin.headers)).raise_for_status()
    buyers = [
        (await _login(http, await _register(http, f"buyer{round_}{i}")))[0] for i in range(20)
    ]
    status_users = [
        (await _login(http, await _register(http, f"status{round_}{i}")))[0].user_id
        for i in range(10)
    ]
    return Drills(
        running, http, admin, Traffic(http, buyers, code), RevokedProbe(http, revoked), status_users
    )


def _recovery(calls: list[tuple[float, int]], back: float) -> float:
    """Seconds from the service being back to the first success after the last failure."""
    failures = [started for started, status in calls if status != 200]
    if not failures:
        return 0.0
    after = [started for started, status in calls if status == 200 and started > failures[-1]]
    return max(0.0, (after[0] if after else time.monotonic()) - back)


async def run_drill(drills: Drills, name: str, fault: Fault, strict: bool = False) -> Outcome:
    drills.traffic.calls.clear()
    drills.probe.accepted = drills.probe.refused = 0
    stop = asyncio.Event()
    load = asyncio.gather(drills.traffic.run(stop), drills.probe.run(stop))
    await asyncio.sleep(STEADY_S)
    back = await fault(drills)
    await asyncio.sleep(AFTER_S)
    stop.set()
    await load
    calls = [(c.started, c.status) for c in drills.traffic.calls]
    await drills.traffic.settle()
    lost, _ = await checks.events_lost()
    uses, held, per_user = await checks.counters(drills.traffic.code)
    purchases = drills.traffic.purchases
    equal = (
        uses == held == per_user == len(purchases) == len(set(purchases.values()))
        and not drills.traffic.pending
    )
    statuses = Counter(status for _, status in calls)
    recover = _recovery(calls, back)
    if name == "RabbitMQ stop":
        recover = drills.converged_s  # for the broker: until loyalty's mirror caught up
    return Outcome(
        name,
        statuses.pop(200, 0),
        statuses.pop(503, 0),
        statuses,
        recover,
        equal,
        lost,
        # A probe that was never answered proves nothing: count that as a failure too.
        drills.probe.accepted if drills.probe.refused else -1,
        strict,
    )


async def postgres_restart(_: Drills) -> float:
    await asyncio.to_thread(services.restart_postgres)
    return time.monotonic()


async def redis_data_loss(_: Drills) -> float:
    await asyncio.to_thread(services.stop_redis)
    await asyncio.to_thread(services.start_redis)
    return time.monotonic()


async def redis_stop(_: Drills) -> float:
    await asyncio.to_thread(services.stop_redis)
    await asyncio.sleep(5)
    await asyncio.to_thread(services.start_redis)
    return time.monotonic()


async def rabbitmq_stop(drills: Drills) -> float:
    await asyncio.to_thread(services.stop_rabbitmq)
    for user_id in drills.status_users:
        answer = await drills.http.post(
            f"/v1/admin/users/{user_id}/status",
            json={"status": "USER_STATUS_BLOCKED"},
            headers=drills.admin.headers,
        )
        answer.raise_for_status()
    await asyncio.sleep(5)
    await asyncio.to_thread(services.start_rabbitmq)
    back = time.monotonic()
    _, drills.converged_s = await checks.events_lost()
    return back


def _workers(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


async def worker_kill(drills: Drills) -> float:
    """SIGKILL of one of loyalty#0's workers; back when its supervisor has a new one."""
    supervisor = drills.running.pid_of("loyalty")
    killed = _workers(supervisor)[0]
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(_workers(supervisor)) < 2 or killed in _workers(supervisor):
        if time.monotonic() > deadline:
            raise RuntimeError("loyalty's supervisor did not start a new worker within 60 s")
        await asyncio.sleep(0.1)
    return time.monotonic()


BURST = 500


def killed_in_burst(name: str) -> Fault:
    """A burst of 500 uses (each with its request id, 20 at a time) through the gateway, and
    the launcher's process `name` SIGKILLed after the first 100 are answered; back once the
    launcher has started it again."""

    async def fault(drills: Drills) -> float:
        traffic, limit, answered = drills.traffic, asyncio.Semaphore(20), 0
        pid = drills.running.pid_of(name)

        async def one(n: int) -> None:
            nonlocal answered
            async with limit:
                started = time.monotonic()
                status = await traffic.use(traffic.users[n % len(traffic.users)], f"burst-{n}")
                traffic.calls.append(Call(started, status))
            answered += 1
            if answered == 100:
                os.kill(pid, signal.SIGKILL)

        await asyncio.gather(*(one(n) for n in range(BURST)))
        deadline = time.monotonic() + 60
        while drills.running.pid_of(name, last=True) == pid:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the launcher did not start {name} again within 60 s")
            await asyncio.sleep(0.1)
        return time.monotonic()

    return fault


def _rotate_key() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auth_service", "rotate-key", "--timeout", "60"],
        env={**os.environ, **system.ENV},
        cwd=system.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _fresh_logins(drills: Drills, email: str, stop: asyncio.Event) -> None:
    """Signs in again and again and calls loyalty with each new token, whichever key and
    replica signed it: a refused valid token shows as an HTTP 401 among the drill's calls."""
    while not stop.is_set():
        started = time.monotonic()
        answer = await drills.http.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        status = answer.status_code
        if status == 200:
            token = answer.json()["accessToken"]
            headers = {"authorization": f"Bearer {token}"}
            status = (await drills.http.get("/v1/promocodes/active", headers=headers)).status_code
        drills.traffic.calls.append(Call(started, status))
        await asyncio.sleep(0.05)


async def key_rotation(drills: Drills) -> float:
    """`python -m auth_service rotate-key` against both auth replicas, with fresh tokens from
    either replica used at once by loyalty throughout and for two seconds after the switch."""
    email = await _register(drills.http, "rotation")
    stop = asyncio.Event()
    fresh = asyncio.create_task(_fresh_logins(drills, email, stop))
    try:
        done = await asyncio.to_thread(_rotate_key)
        await asyncio.sleep(2.0)
    finally:
        stop.set()
        await fresh
    if done.returncode != 0:
        raise RuntimeError(f"rotate-key failed: {done.stdout}{done.stderr}")
    print(f"  {done.stdout.strip()}", flush=True)
    return time.monotonic()


async def no_fault(_: Drills) -> float:
    return time.monotonic()


# (name, fault, every use must be answered 200 at once)
DRILLS: list[tuple[str, Fault, bool]] = [
    ("PostgreSQL restart", postgres_restart, False),
    ("Redis data loss", redis_data_loss, False),
    ("Redis stop", redis_stop, False),
    ("RabbitMQ stop", rabbitmq_stop, False),
    ("SIGKILL a loyalty worker", worker_kill, False),
    ("Key rotation, 2 auth replicas", key_rotation, True),
    (f"SIGKILL loyalty#1 in {BURST} uses", killed_in_burst("loyalty#1"), True),
    # The edge in front of replica 1 (HAProxy): the gateway retries on the other edge.
    (f"SIGKILL edge#1 in {BURST} uses", killed_in_burst("edge#1"), True),
]
POOLED = ("Through PgBouncer", no_fault, True)


def table(outcomes: list[Outcome]) -> str:
    header = (
        "| drill | OK | UNAVAILABLE | other | recover s | counters equal | events lost"
        " | revoked accepted | result |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        other = ", ".join(f"{n} x HTTP {s}" for s, n in sorted(o.other.items())) or "0"
        lines.append(
            f"| {o.name} | {o.ok} | {o.unavailable} | {other} | {o.recover_s:.1f} |"
            f" {'yes' if o.counters_equal else 'NO'} | {o.events_lost} | {o.revoked_accepted} |"
            f" {'pass' if o.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


async def drill_all() -> list[Outcome]:
    running = await asyncio.to_thread(system.start)
    outcomes: list[Outcome] = []
    try:
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
            drills = await prepare(running, http)
            for name, fault, strict in DRILLS:
                outcomes.append(await run_drill(drills, name, fault, strict))
                print(table(outcomes[-1:]).splitlines()[-1], flush=True)
        for name, outcome in (("loyalty#1", outcomes[-2]), ("edge#1", outcomes[-1])):
            if not running.saw(f"{name} exited (-9); starting it again"):
                print(f"the launcher did not report {name}'s death and restart", flush=True)
                outcome.counters_equal = False
    finally:
        await asyncio.to_thread(system.stop, running)
        print("\n".join(["", "make run REPLICAS=2 said:", *running.output]), flush=True)
    outcomes.append(await drill_pooled())
    return outcomes


async def drill_pooled() -> Outcome:
    """The system started again with both services' pools going through a PgBouncer in
    transaction mode (migrations and LISTEN straight to PostgreSQL): steady uses, a revoked
    token, registrations reaching loyalty's mirror; every use answered 200, counters exact."""
    bouncer = await asyncio.to_thread(pooler.start, system.PG, 20)
    env = {
        "AUTH_DATABASE_URL": bouncer.url(system.ENV["AUTH_DATABASE_URL"]),
        "AUTH_DATABASE_DIRECT_URL": system.ENV["AUTH_DATABASE_URL"],
        "AUTH_DATABASE_POOLER": "pgbouncer",
        "LOYALTY_DATABASE_URL": bouncer.url(system.ENV["LOYALTY_DATABASE_URL"]),
        "LOYALTY_DATABASE_DIRECT_URL": system.ENV["LOYALTY_DATABASE_URL"],
        "LOYALTY_DATABASE_POOLER": "pgbouncer",
    }
    running = await asyncio.to_thread(system.start, env)
    try:
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
            drills = await prepare(running, http, "pooled")
            outcome = await run_drill(drills, *POOLED)
            print(table([outcome]).splitlines()[-1], flush=True)
            return outcome
    finally:
        await asyncio.to_thread(system.stop, running)
        await asyncio.to_thread(bouncer.stop)


async def main() -> int:
    started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        outcomes = await drill_all()
    finally:
        await asyncio.to_thread(services.ensure_all_up)
        await system.drop_everything()
    print()
    print(table(outcomes))
    print(f"\n{len(outcomes)} drills in {time.monotonic() - started:.0f} s")
    passed = len(outcomes) == len(DRILLS) + 1 and all(o.passed for o in outcomes)
    if passed:
        system.LOG_PATH.unlink(missing_ok=True)
    else:
        print(f"the processes' logs: {system.LOG_PATH}")
    print("drills passed" if passed else "DRILLS FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
