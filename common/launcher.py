"""`make run`: start every process of the system, print where each listens, stop all on Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

PROCESSES = [
    ("auth", "auth_service", "AUTH_GRPC_ADDR", "127.0.0.1:50051", "gRPC"),
    ("loyalty", "loyalty_service", "LOYALTY_GRPC_ADDR", "127.0.0.1:50052", "gRPC"),
    ("gateway", "gateway", "GATEWAY_HTTP_ADDR", "127.0.0.1:8080", "HTTP"),
]


def _start() -> list[tuple[str, subprocess.Popen[bytes]]]:
    started = []
    for name, module, variable, default, kind in PROCESSES:
        if importlib.util.find_spec(f"{module}.__main__") is None:
            continue
        started.append((name, subprocess.Popen([sys.executable, "-m", module])))
        print(f"{name:8} {kind} {os.environ.get(variable, default)}", flush=True)
    return started


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
    return max((abs(child.returncode or 0) for _, child in children), default=0)


def main() -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    children = _start()
    print("all started; Ctrl-C stops them", flush=True)
    try:
        while all(child.poll() is None for _, child in children):
            time.sleep(0.5)
        dead = [name for name, child in children if child.poll() is not None]
        print(f"stopped unexpectedly: {', '.join(dead)}; stopping the rest", flush=True)
        _stop(children)
        return 1
    except KeyboardInterrupt:
        print("stopping…", flush=True)
        return _stop(children)


if __name__ == "__main__":
    sys.exit(main())
