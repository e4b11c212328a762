"""HAProxy in front of a gRPC server for a measurement (the system's edge,
common.processes.edge, with the bench's own server behind it): bench.floors measures what a
refusal and a forwarded call cost it, bench.edge_spike both spikes with and without it."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.processes import edge


def config(
    front: str, back: str, in_flight: int, folder: str, queued: int = 0, servers: int = 1
) -> str:
    """The edge's configuration for one server `back` reached over `servers` connection pools
    (a service's workers share one TCP port, and each connection reaches one of them)."""
    return edge.config(front, [back] * servers, in_flight, folder, queued)


def _wait_listening(address: str, deadline_s: float = 10) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"haproxy did not listen on {address}")


@contextmanager
def running(
    front: str, back: str, in_flight: int, **options: int
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as folder:
        path = edge.write(Path(folder), config(front, back, in_flight, folder, **options))
        # -db: in the foreground, one process, so its pid is the one whose CPU is counted.
        process = subprocess.Popen([edge.executable(), "-db", "-q", "-f", str(path)])
        try:
            _wait_listening(front)
            yield process
        finally:
            process.terminate()
            process.wait(10)
