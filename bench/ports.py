"""Ports for the servers a test or a benchmark starts.

They come from below the kernel's ephemeral range. A port from bind(0) is closed again before
the server binds it, and meanwhile any outgoing connection (a migration's, a client's, a
worker's) may take it as its own local port, which blocks the server's bind: a rare start-up
failure. Below the range no connection takes one. A port is handed out once a process (the
tests run in one). Standard library only: the tests' conftest imports it before the
services' settings are in the environment."""

from __future__ import annotations

import random
import socket
import time

LOWEST_PORT = 12000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """Nothing listens on the port and no connection holds it as its local port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(neighbours: tuple[int, ...] = ()) -> int:
    """A port no other server of this process was given, free now, with `port + n` for each
    n in `neighbours` free too (a launcher's replicas and edges listen at fixed shifts)."""
    top = _ephemeral_low() - max(neighbours, default=0)
    while True:
        port = random.randrange(LOWEST_PORT, top)
        taken = [port + n for n in (0, *neighbours)]
        if any(p in _handed_out for p in taken) or not all(bindable(p) for p in taken):
            continue
        _handed_out.update(taken)
        return port


def wait_listening(address: str, what: str, deadline_s: float = 10) -> None:
    """Returns once `address` (HOST:PORT) accepts a connection; `what` names the server in
    the error when it does not within `deadline_s`."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {address}")
