"""Errors reach Sentry without secrets; every request logs one JSON line with its request id."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.ports import free_port
from tests.e2e.processes import ROOT, grpcurl, run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email
from tests.sentry_probe import SECRETS


class _Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sentry_server() -> Iterator[str]:
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/1"
    server.shutdown()


def test_a_failing_handler_reaches_sentry_without_secrets(sentry_server: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.sentry_probe", sentry_server],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "INTERNAL"
    for secret in SECRETS.values():  # the error's log line is scrubbed too
        assert secret not in done.stderr
    assert "rpc_failed" in done.stderr
    events = b"\n".join(_Collector.received).decode(errors="replace")
    assert "RuntimeError" in events
    for secret in SECRETS.values():
        assert secret not in events
    assert "Bearer" not in events


def test_every_request_logs_one_json_line_with_its_request_id() -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AUTH_GRPC_ADDR": address, "LOG_LEVEL": "INFO"}
    run([sys.executable, "-m", "auth_service", "migrate"], env)
    process = start("auth_service", env)
    try:
        wait_serving(address, process)
        email = unique_email("logs")
        body = json.dumps({"email": email, "password": PASSWORD})
        grpcurl(
            address,
            "loyalty.auth.v1.AuthService/Register",
            data=body,
            headers=("x-request-id: trace-42",),
        )
    finally:
        assert stop(process) == 0
    stderr = process.stderr.read().decode() if process.stderr else ""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    calls = [
        line
        for line in lines
        if line.get("event") == "rpc" and line.get("method", "").endswith("/Register")
    ]
    assert len(calls) == 1
    assert calls[0]["request_id"] == "trace-42" and calls[0]["code"] == "OK"
    assert isinstance(calls[0]["duration_ms"], float)
    assert email not in stderr and PASSWORD not in stderr


_LOG_LINES = """
from common.telemetry import logs
logs.configure("worker")
log = logs.get_logger("test")
for n in range(3000):
    log.info("shutting_down", n=n, grace=3.0)
"""


def test_workers_sharing_one_stderr_never_glue_their_log_lines_together() -> None:
    """Several workers of a service write to one inherited stderr: each JSON line must reach
    it whole, in one write, or two lines written at once come out as one unparseable line."""
    read_end, write_end = os.pipe()
    writers = [
        subprocess.Popen([sys.executable, "-c", _LOG_LINES], cwd=ROOT, stderr=write_end)
        for _ in range(3)
    ]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        lines = pipe.read().decode().splitlines()
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]
    events = [json.loads(line) for line in lines]
    assert len(events) == 9000 and {e["event"] for e in events} == {"shutting_down"}
