"""The launcher (`make run`): "ready" means every health check passes, and Ctrl-C or SIGTERM
stops everything cleanly even when it was started with SIGINT ignored (under nohup, `&` in a
script, many CI runners)."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import httpx
import pytest

from bench.ports import free_port
from common.processes.healthcheck import grpc_serving
from common.processes.launcher import DIRECT_PORT_SHIFT
from tests.e2e.processes import ROOT, run


def _lines(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str], start: str, deadline_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if seen[-1].startswith(start):
            return seen
    raise AssertionError(f"no line starting {start!r} in {seen}")


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ready_means_serving_and_a_signal_stops_everything(stop_signal: int) -> None:
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{_free_base()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
    }
    for service in ("auth_service", "loyalty_service"):
        run([sys.executable, "-m", service, "migrate"], env)
    # SIGINT inherited as ignored, as under nohup or `&` in a script (a shell's `trap '' INT`
    # survives exec; a preexec_fn would run Python in a fork of this threaded process).
    launcher = subprocess.Popen(
        ["bash", "-c", f"trap '' INT; exec {sys.executable} -m common.processes.launcher"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = _lines(launcher.stdout)
        _wait_for_line(lines, "ready", 120)
        # At the moment it says ready, every process serves.
        assert grpc_serving(env["AUTH_GRPC_ADDR"])
        assert grpc_serving(env["LOYALTY_GRPC_ADDR"])  # the edge, in front of loyalty's workers
        assert grpc_serving(_shift(env["LOYALTY_GRPC_ADDR"], DIRECT_PORT_SHIFT))  # loyalty's own
        assert httpx.get(f"http://{env['GATEWAY_HTTP_ADDR']}/healthz").status_code == 200
        launcher.send_signal(stop_signal)
        assert launcher.wait(30) == 0
        rest = _wait_for_line(lines, "stopping", 5)
        assert not any("unexpectedly" in line for line in rest)
        for variable in ("AUTH_GRPC_ADDR", "LOYALTY_GRPC_ADDR", "GATEWAY_HTTP_ADDR"):
            assert not _listening(env[variable]), f"{variable} still served after the signal"
        assert not _listening(_shift(env["LOYALTY_GRPC_ADDR"], DIRECT_PORT_SHIFT))
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def _free_base() -> int:
    """A free port whose neighbours are free too: +10 (replica 1's), and +5 and +15, where
    loyalty listens behind its edges."""
    return free_port(neighbours=(5, 10, 15))


def _eventually_answers(url: str, status: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while (got := httpx.get(url).status_code) != status:
        assert time.monotonic() < deadline, f"{url} still answers {got}, not {status}"
        time.sleep(0.2)


def _shift(address: str, by: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + by}"


def _serving(address: str) -> bool:
    try:
        return grpc_serving(address)
    except grpc.RpcError:
        return False


def _eventually_serving(address: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while not _serving(address):
        assert time.monotonic() < deadline, f"{address} does not serve again"
        time.sleep(0.2)


def test_two_replicas_serve_and_one_killed_comes_back_while_the_others_serve() -> None:
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{_free_base()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{_free_base()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
    }
    for service in ("auth_service", "loyalty_service"):
        run([sys.executable, "-m", service, "migrate"], env)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "common.processes.launcher", "--replicas", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    replicas = [env[v] for v in ("AUTH_GRPC_ADDR", "LOYALTY_GRPC_ADDR")]
    replicas += [_shift(address, 10) for address in replicas]
    try:
        lines = _lines(launcher.stdout)
        started = _wait_for_line(lines, "ready", 120)
        assert all(grpc_serving(address) for address in replicas)
        pid = next(int(line.split()[-1]) for line in started if line.startswith("loyalty#1 "))
        os.kill(pid, signal.SIGKILL)
        _wait_for_line(lines, "loyalty#1 exited (-9); starting it again in 0.5 s", 10)
        assert launcher.poll() is None
        assert all(grpc_serving(address) for address in replicas if address != replicas[3])
        again = _wait_for_line(lines, "loyalty#1 ", 10)[-1]
        assert int(again.split()[-1]) != pid
        _eventually_serving(replicas[3], 60)
        # The edge in front of replica 1 dies: the launcher starts it again, likewise.
        edge = next(int(line.split()[-1]) for line in started if line.startswith("edge#1 "))
        os.kill(edge, signal.SIGKILL)
        _wait_for_line(lines, "edge#1 exited (-9)", 10)
        _eventually_serving(replicas[3], 30)
        gateway = f"http://{env['GATEWAY_HTTP_ADDR']}"
        # Loyalty still answers (401: no token) once the gateway's balancer has seen the
        # dead replica go, and then every time, from the replica that is left.
        _eventually_answers(f"{gateway}/v1/tariffs", 401, 15)
        assert {httpx.get(f"{gateway}/v1/tariffs").status_code for _ in range(20)} == {401}
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) == 0
        for address in [*replicas, env["GATEWAY_HTTP_ADDR"]]:
            assert not _listening(address), f"{address} still served after SIGTERM"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
