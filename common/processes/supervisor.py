"""Several worker processes of one service behind one port, so that a service uses every core.

`python -m loyalty_service` with `LOYALTY_WORKERS=2` (likewise `AUTH_WORKERS`,
`GATEWAY_WORKERS`) becomes a small supervisor: it checks that the port is free, starts that many
copies of itself, each told its index in `SERVICE_WORKER`, and each listening on the same port
with SO_REUSEPORT (the kernel spreads connections over them). The supervisor forwards SIGTERM
and SIGINT, and when one worker dies it starts a new one in its place (after a back-off,
common.processes.restarts): a worker's death costs only its own calls in flight, as under
gunicorn or uvicorn. Only a crash loop (workers dying again and again) makes it stop the others,
say so in a `worker_crash_loop` line and exit with a failure. With a count of 1 the service runs
in the process itself, as before.

Why SO_REUSEPORT is on only for workers: with it on, a second server started on a port that is
already taken (a leftover process, a test that picked the same "free" port) joins the first one
silently and takes half its connections. The supervisor keeps that failure loud: it binds the
port once without SO_REUSEPORT before starting anyone, and a port held by anything fails there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import structlog

from common.processes import supervisor_metrics as worker_metrics
from common.processes.parent_death import die_with_parent
from common.processes.restarts import CrashLoop, RestartPolicy, Restarts
from common.telemetry.logs import get_logger

# Worker processes of a service unless its *_WORKERS says otherwise: both cores of the machine
# the benchmarks run on (docs/performance.md).
DEFAULT_COUNT = 2
WORKER_VARIABLE = "SERVICE_WORKER"  # "INDEX/COUNT", set by the supervisor in each worker

log = get_logger("workers")


@dataclass(frozen=True)
class Worker:
    index: int
    count: int


def current() -> Worker | None:
    """This process's place among its service's workers; None when it runs alone."""
    index, _, count = os.environ.get(WORKER_VARIABLE, "").partition("/")
    if not index.isdigit() or not count.isdigit():
        return None
    return Worker(int(index), int(count))


def shares_port() -> bool:
    return current() is not None


def metrics_address(address: str) -> str:
    """Where this process serves its own /metrics: the service's address when it runs alone;
    a worker's own port otherwise, which the supervisor gathers
    (common.processes.supervisor_metrics)."""
    worker = current()
    if not address or worker is None:
        return address
    return worker_metrics.worker_address(address, worker.index)


def pool_share(size: int) -> int:
    """A worker's part of the service's database pool: `*_DB_POOL_SIZE` stays the service's
    total, so more workers do not take more of PostgreSQL's connections."""
    worker = current()
    return size if worker is None else max(2, size // worker.count)


def _die_with_supervisor() -> None:
    """In a worker before exec. A supervisor that dies without stopping its workers (SIGKILL)
    crashed: its workers die at once too, as a single process's threads would, rather than
    keep the port or drain calls that clients should take elsewhere."""
    die_with_parent(signal.SIGKILL)


def check_free(address: str) -> None:
    """Fails fast, naming the address, when anything already listens there."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR lets the probe past the last run's connections in TIME_WAIT, never past
        # a listening socket (Linux refuses that bind unless both sides set SO_REUSEPORT).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            raise SystemExit(f"cannot listen on {address}: {error.strerror}") from None


class _Stop(Exception):
    pass


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _spawn(module: str, index: int, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module, "serve"],
        env={**os.environ, WORKER_VARIABLE: f"{index}/{count}"},
        start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
        preexec_fn=_die_with_supervisor,
    )


def _stop_all(children: list[subprocess.Popen[bytes]], grace: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass(frozen=True)
class Service:
    module: str  # `python -m MODULE serve` starts one worker
    count: int
    address: str  # the port the workers share
    metrics_address: str  # the supervisor's /metrics, gathered from the workers'; "" is off
    grace: float


def supervise(service: Service, policy: RestartPolicy | None = None) -> int:
    """Runs the service's workers until a signal (exit 0), starting a new worker in a dead
    one's place, until a crash loop (the others are stopped; exit 1)."""
    check_free(service.address)
    structlog.contextvars.bind_contextvars(worker="supervisor")
    worker_metrics.serve(service.metrics_address, service.count)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    slots: list[_Slot] = []
    try:
        slots = _start_slots(service, policy or RestartPolicy.from_env())
        log.info("workers_started", count=service.count, pids=[s.child.pid for s in slots])
        _keep_alive(service, slots)
    except CrashLoop as loop:
        log.error("worker_crash_loop", dying=loop.name, error=str(loop))
        _stop_all([s.child for s in slots], service.grace)
        return 1
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_all([s.child for s in slots], service.grace)
        return 0
    raise AssertionError("_keep_alive returns only by raising")


@dataclass
class _Slot:
    """One worker index: its current process and when it may be started again."""

    index: int
    child: subprocess.Popen[bytes]
    restarts: Restarts


def _start_slots(service: Service, policy: RestartPolicy) -> list[_Slot]:
    slots = []
    for index in range(service.count):
        restarts = Restarts(f"worker {index}", policy)
        restarts.started()
        slots.append(_Slot(index, _spawn(service.module, index, service.count), restarts))
    return slots


def _keep_alive(service: Service, slots: list[_Slot]) -> None:
    """Watches the workers for ever: a dead one is reported and, after its back-off, started
    again; a crash loop raises CrashLoop."""
    while True:
        for slot in slots:
            _tend(service, slot)
        time.sleep(0.1)


def _tend(service: Service, slot: _Slot) -> None:
    if slot.restarts.due is None and slot.child.poll() is not None:
        delay = slot.restarts.died()
        log.error(
            "worker_exited",
            pid=slot.child.pid,
            code=slot.child.returncode,
            index=slot.index,
            restart_in_s=delay,
        )
    elif slot.restarts.is_due():
        slot.child = _spawn(service.module, slot.index, service.count)
        slot.restarts.started()
        log.info("worker_restarted", pid=slot.child.pid, index=slot.index)


def serve(service: Service, run_one: Callable[[], None]) -> None:
    """Runs the service: in this process (`run_one()`) when it is a worker or alone, else as
    the supervisor of its workers."""
    if service.count <= 1 or shares_port():
        run_one()
        return
    sys.exit(supervise(service))
