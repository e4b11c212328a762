"""HAProxy (Debian's, in C) in front of a gRPC server, holding a cap on the calls in flight and
refusing the excess itself: a trailers-only answer with the services' own overload status
(RESOURCE_EXHAUSTED, ErrorInfo OVERLOADED, RetryInfo), so that a refusal costs no Python.
bench.floors measures what a refusal and a forwarded call cost it; the system does not run it
(docs/performance-notes.md says why)."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.rpc.grpc_errors import overloaded_status

DETAILS = "grpc-status-details-bin"
RETRY_AFTER_S = 0.1


def refusal_headers(retry_after_s: float, domain: str) -> dict[str, str]:
    """The gRPC status of a refusal for load as response headers: with no body they end the
    stream, which gRPC reads as a trailers-only answer. Binary metadata is base64, unpadded."""
    status = overloaded_status(retry_after_s, domain)
    headers = {"grpc-status": str(status.code.value[0]), "grpc-message": status.details}
    for key, value in status.trailing_metadata:
        assert key == DETAILS and isinstance(value, bytes)
        headers[key] = base64.b64encode(value).decode().rstrip("=")
    return headers


def config(front: str, back: str, in_flight: int, queued: int = 0, servers: int = 1) -> str:
    """A frontend on `front` (h2c, as gRPC clients speak it) forwarding to `back` at most
    `in_flight` calls at once, over `servers` connection pools (a service's workers share one
    port, and each connection reaches one of them); past those, up to `queued` calls (at least
    one: HAProxy's refusal rule reads the queue's length) wait in the proxy's queue and the
    rest are refused at once. `in_flight` 0 refuses every call. One thread: what one core's
    worth costs."""
    refusal = " ".join(f'hdr {k} "{v}"' for k, v in refusal_headers(RETRY_AFTER_S, "edge").items())
    full = "TRUE" if in_flight == 0 else f"{{ queue(upstream) ge {max(queued, 1)} }}"
    each = max(in_flight // servers, 1)
    return "\n".join(
        [
            "global",
            "  nbthread 1",
            "defaults",
            "  mode http",
            "  timeout connect 1s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  timeout queue 1s",
            "frontend grpc",
            f"  bind {front} proto h2",
            f"  http-request return status 200 {refusal} if {full}",
            "  default_backend upstream",
            "backend upstream",
            "  balance roundrobin",
            *(f"  server s{i} {back} proto h2 maxconn {each}" for i in range(servers)),
            "",
        ]
    )


def executable() -> str:
    """Debian installs it in /usr/sbin, which a user's PATH may lack (make system-deps)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise SystemExit("haproxy is not installed: make system-deps installs it")
    return found


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
        path = Path(folder) / "haproxy.cfg"
        path.write_text(config(front, back, in_flight, **options))
        # -db: in the foreground, one process, so its pid is the one whose CPU is counted.
        process = subprocess.Popen([executable(), "-db", "-q", "-f", str(path)])
        try:
            _wait_listening(front)
            yield process
        finally:
            process.terminate()
            process.wait(10)
