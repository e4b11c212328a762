"""`make run`: start every process of the system, say "ready" once each one's health check
passes, stop them all on Ctrl-C or SIGTERM."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import grpc

from common.healthcheck import grpc_serving, http_ok

READY_TIMEOUT_S = 120
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    variable: str
    default: str
    kind: str  # "gRPC" or "HTTP"

    @property
    def address(self) -> str:
        return os.environ.get(self.variable, self.default)

    def serving(self) -> bool:
        try:
            if self.kind == "gRPC":
                return grpc_serving(self.address)
            return http_ok(f"http://{self.address}/healthz")
        except (grpc.RpcError, OSError):
            return False


PROCESSES = [
    Process("auth", "auth_service", "AUTH_GRPC_ADDR", "127.0.0.1:50051", "gRPC"),
    Process("loyalty", "loyalty_service", "LOYALTY_GRPC_ADDR", "127.0.0.1:50052", "gRPC"),
    Process("gateway", "gateway", "GATEWAY_HTTP_ADDR", "127.0.0.1:8080", "HTTP"),
]

Children = list[tuple[Process, subprocess.Popen[bytes]]]


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
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start() -> Children:
    started = []
    for process in PROCESSES:
        if importlib.util.find_spec(f"{process.module}.__main__") is None:
            continue
        child = subprocess.Popen(
            [sys.executable, "-m", process.module],
            start_new_session=True,
            preexec_fn=_child_setup,  # safe: the launcher starts no threads before this
        )
        started.append((process, child))
        print(f"{process.name:8} {process.kind} {process.address}", flush=True)
    return started


def _dead(children: Children) -> list[str]:
    return [process.name for process, child in children if child.poll() is not None]


def _wait_ready(children: Children, sleep: Callable[[float], None] = time.sleep) -> bool:
    """True once every process answers its health check; False if one exits first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = [process for process, _ in children]
    while waiting and time.monotonic() < deadline:
        if _dead(children):
            return False
        waiting = [process for process in waiting if not process.serving()]
        if waiting:
            sleep(0.2)
    return not waiting


def _stop(children: Children) -> int:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return max((abs(child.returncode or 0) for _, child in children), default=0)


def _supervise(children: Children) -> int:
    if not _wait_ready(children):
        print(f"not ready: {', '.join(_dead(children)) or 'timed out'}; stopping", flush=True)
        _stop(children)
        return 1
    print("ready: every health check passes; Ctrl-C stops everything", flush=True)
    while not _dead(children):
        time.sleep(0.5)
    print(f"stopped unexpectedly: {', '.join(_dead(children))}; stopping the rest", flush=True)
    _stop(children)
    return 1


def main() -> int:
    _own_signals()
    children: Children = []
    try:
        children = _start()
        return _supervise(children)
    except Stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping…", flush=True)
        return _stop(children)


if __name__ == "__main__":
    sys.exit(main())
