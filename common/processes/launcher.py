"""`make run`: start every process of the system, say "ready" once each one's health check
passes, start a process that died again (after a back-off, common.processes.restarts), and stop
them all on Ctrl-C or SIGTERM, or when one of them is caught in a crash loop."""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import grpc

from common.processes import edge as edges
from common.processes.healthcheck import grpc_serving, http_ok
from common.processes.parent_death import die_with_parent
from common.processes.restarts import CrashLoop, RestartPolicy, Restarts

READY_TIMEOUT_S = 120
REPLICA_VARIABLE = "SERVICE_REPLICA"  # the replica's index, for its log lines


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    variable: str
    default: str
    kind: str  # "gRPC" or "HTTP"
    metrics_variable: str
    metrics_default: str
    replicated: bool = True


PROCESSES = [
    Process(
        "auth", "auth_service", "AUTH_GRPC_ADDR", "127.0.0.1:50051", "gRPC",
        "AUTH_METRICS_ADDR", "127.0.0.1:9101",
    ),
    Process(
        "loyalty", "loyalty_service", "LOYALTY_GRPC_ADDR", "127.0.0.1:50052", "gRPC",
        "LOYALTY_METRICS_ADDR", "127.0.0.1:9102",
    ),
    Process(
        "gateway", "gateway", "GATEWAY_HTTP_ADDR", "127.0.0.1:8080", "HTTP",
        "GATEWAY_METRICS_ADDR", "127.0.0.1:9103", replicated=False,
    ),
]  # fmt: skip


def shifted(address: str, by: int) -> str:
    """HOST:PORT with the port moved by `by` (replica k listens on the default port + 10·k)."""
    if not address or by == 0:
        return address
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + by}"


def target(addresses: list[str]) -> str:
    """One gRPC target naming every replica: HOST:PORT alone, else `ipv4:A:P,B:P`."""
    if len(addresses) == 1:
        return addresses[0]
    scheme = "ipv6" if addresses[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(addresses)}"


@dataclass(frozen=True)
class Replica:
    process: Process
    index: int
    env: dict[str, str]

    @property
    def name(self) -> str:
        return self.process.name if self.index == 0 else f"{self.process.name}#{self.index}"

    @property
    def address(self) -> str:
        return self.env[self.process.variable]

    def serving(self) -> bool:
        try:
            if self.process.kind == "gRPC":
                return grpc_serving(self.address)
            return http_ok(f"http://{self.address}/healthz")
        except (grpc.RpcError, OSError):
            return False


def _base(process: Process) -> tuple[str, str]:
    return (
        os.environ.get(process.variable, process.default),
        os.environ.get(process.metrics_variable, process.metrics_default),
    )


CLIENT_ADDRESS_KEY = "CLIENT_ADDRESS_KEY"


def client_address_key() -> str:
    """The key the gateway signs client addresses with, shared by every process of this run:
    the environment's when set (empty turns signing off), else a fresh random one, so under
    a plain `make run` every HTTP client is judged by its own address."""
    return os.environ.get(CLIENT_ADDRESS_KEY, secrets.token_hex(32))


# The edge in front of each loyalty replica (common.processes.edge): it takes the replica's
# address, and loyalty's own port moves this far up (behind it, for a person to reach the
# service directly); the workers' sockets are in a folder of the run's own.
EDGE = Process("edge", "common.processes.edge", "EDGE_ADDR", "", "gRPC", "", "")
BEHIND_EDGE = "loyalty"
DIRECT_PORT_SHIFT = 5


def with_edges(replicas: list[Replica], folder: str) -> list[Replica]:
    """The plan with an edge in front of every loyalty replica: the edge listens where the
    replica would have (so every client's target names the edges), the replica on its
    address + DIRECT_PORT_SHIFT and on its workers' sockets in `folder`."""
    prefixes = {
        r.index: os.path.join(folder, f"{r.process.name}{r.index}-")
        for r in replicas
        if r.process.name == BEHIND_EDGE
    }
    planned = []
    for replica in replicas:
        if replica.process.name != BEHIND_EDGE:
            planned.append(replica)
            continue
        loyalty, edge = edges.environments(
            replica.env,
            public=replica.address,
            direct=shifted(replica.address, DIRECT_PORT_SHIFT),
            sockets=prefixes[replica.index],
            # The other replicas' workers, for while this one's are all dead.
            backups=[p for k, p in prefixes.items() if k != replica.index],
        )
        planned.append(Replica(replica.process, replica.index, loyalty))
        planned.append(Replica(EDGE, replica.index, edge))
    return planned


def plan(replicas: int, processes: list[Process] = PROCESSES) -> list[Replica]:
    """Every process to start with its environment: `replicas` of each replicated service
    (replica k on its addresses + 10·k), the gateway once, and every client given a target
    naming all the replicas of the service it calls."""
    counts = {p.name: replicas if p.replicated else 1 for p in processes}
    listen = {
        p.name: [shifted(_base(p)[0], 10 * k) for k in range(counts[p.name])] for p in processes
    }
    shared = {
        **os.environ,
        **{p.variable: target(listen[p.name]) for p in processes},
        CLIENT_ADDRESS_KEY: client_address_key(),
    }
    return [
        Replica(
            p,
            k,
            {
                **shared,
                p.variable: listen[p.name][k],
                p.metrics_variable: shifted(_base(p)[1], 10 * k),
                REPLICA_VARIABLE: str(k),
            },
        )
        for p in processes
        for k in range(counts[p.name])
    ]


@dataclass
class Child:
    """One replica's current process, and when it may be started again after a death."""

    replica: Replica
    process: subprocess.Popen[bytes]
    restarts: Restarts


Children = list[Child]


class Stop(Exception):
    """Ctrl-C or SIGTERM reached the launcher."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def _own_signals() -> None:
    """Whatever the launcher inherited (SIGINT ignored under nohup, `&` in a script or many
    CI runners), Ctrl-C and SIGTERM now stop it; the children run in a session of their own,
    so only the launcher sees a terminal's Ctrl-C and it stops them in order."""
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)


def _child_setup() -> None:
    # A child whose launcher died (SIGKILL) must not keep holding its port.
    die_with_parent(signal.SIGTERM)


def _spawn(replica: Replica) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", replica.process.module],
        env=replica.env,
        start_new_session=True,
        preexec_fn=_child_setup,
    )
    where = f"{replica.process.kind} {replica.address}"
    print(f"{replica.name:10} {where:24} pid {child.pid}", flush=True)
    return child


def _start(replicas: list[Replica], policy: RestartPolicy) -> Children:
    started = []
    for replica in replicas:
        if importlib.util.find_spec(f"{replica.process.module}.__main__") is None:
            continue
        restarts = Restarts(replica.name, policy)
        restarts.started()
        started.append(Child(replica, _spawn(replica), restarts))
    return started


def _dead(children: Children) -> list[str]:
    return [c.replica.name for c in children if c.process.poll() is not None]


def _wait_ready(children: Children, sleep: Callable[[float], None] = time.sleep) -> bool:
    """True once every process answers its health check; False if one exits first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = [c.replica for c in children]
    while waiting and time.monotonic() < deadline:
        if _dead(children):
            return False
        waiting = [replica for replica in waiting if not replica.serving()]
        if waiting:
            sleep(0.2)
    return not waiting


def _stop(children: Children) -> int:
    """Stops the live processes; the exit code is the worst of theirs (a process that died
    earlier was reported when it did)."""
    alive = [c.process for c in children if c.process.poll() is None]
    for child in alive:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in alive:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return max((abs(child.returncode or 0) for child in alive), default=0)


def _tend(child: Child) -> None:
    """A process that died is reported and, once its back-off is over, started again; the
    others keep serving meanwhile. A crash loop raises CrashLoop."""
    name = child.replica.name
    if child.restarts.due is None and child.process.poll() is not None:
        delay = child.restarts.died()
        code = child.process.returncode
        print(f"{name} exited ({code}); starting it again in {delay:g} s", flush=True)
    elif child.restarts.is_due():
        child.process = _spawn(child.replica)
        child.restarts.started()


def _watch(children: Children) -> None:
    """Keeps every process running; returns only by raising CrashLoop."""
    while True:
        for child in children:
            _tend(child)
        time.sleep(0.2)


def _supervise(children: Children) -> int:
    if not _wait_ready(children):
        print(f"not ready: {', '.join(_dead(children)) or 'timed out'}; stopping", flush=True)
        _stop(children)
        return 1
    print("ready: every health check passes; Ctrl-C stops everything", flush=True)
    try:
        _watch(children)
    except CrashLoop as loop:
        print(f"crash loop: {loop}; stopping the rest", flush=True)
    _stop(children)
    return 1


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m common.processes.launcher")
    parser.add_argument(
        "--replicas", type=int, default=1, help="processes of auth and of loyalty (default 1)"
    )
    parser.add_argument(
        "--no-edge",
        action="store_true",
        help="loyalty without HAProxy in front (it then refuses past capacity itself)",
    )
    arguments = parser.parse_args(argv)
    if arguments.replicas < 1:
        parser.error("--replicas must be at least 1")
    return arguments


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    policy = RestartPolicy.from_env()
    _own_signals()
    children: Children = []
    with tempfile.TemporaryDirectory(prefix="make-run-") as folder:  # mode 0700: ours alone
        replicas = plan(arguments.replicas)
        if not arguments.no_edge:
            replicas = with_edges(replicas, folder)
        try:
            children = _start(replicas, policy)
            return _supervise(children)
        except Stop:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("stopping…", flush=True)
            return _stop(children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
