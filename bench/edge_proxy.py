"""HAProxy in front of a gRPC server for a measurement (the system's edge,
common.processes.edge, with the bench's own server behind it): bench.floors measures what a
refusal and a forwarded call cost it, bench.edge_spike both spikes with and without it."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.ports import wait_listening
from common.processes import edge


def config(
    front: str, back: str, in_flight: int, folder: str, queued: int = 0, servers: int = 1
) -> str:
    """The edge's configuration for one server `back` reached over `servers` connection pools
    (a service's workers share one TCP port, and each connection reaches one of them)."""
    return edge.config(front, [back] * servers, in_flight, folder, queued)


@contextmanager
def running(
    front: str, back: str, in_flight: int, **options: int
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as folder:
        path = edge.write(Path(folder), config(front, back, in_flight, folder, **options))
        # -db: in the foreground, one process, so its pid is the one whose CPU is counted.
        process = subprocess.Popen([edge.executable(), "-db", "-q", "-f", str(path)])
        try:
            wait_listening(front, "haproxy")
            yield process
        finally:
            process.terminate()
            process.wait(10)
