"""The machine's own PostgreSQL, Redis and RabbitMQ: take one away, bring it back, and make
sure every one of them runs again whatever happened (other test runs share them)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

REDIS_START = [
    "redis-server",
    "--daemonize", "yes",
    "--bind", "127.0.0.1", "-::1",
    "--port", "6379",
    "--save", "",
    "--appendonly", "no",
    "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _pg_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def restart_postgres() -> None:
    done = _run(*_pg_cluster(), "restart", "-m", "fast")
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {done.stderr.strip()}")


def redis_up() -> bool:
    return _run("redis-cli", "-p", "6379", "ping", timeout=5).stdout.strip() == "PONG"


def stop_redis() -> None:
    """Stops Redis; it keeps nothing on disk, so its data is gone."""
    _run("redis-cli", "-p", "6379", "shutdown", "nosave", timeout=10)
    _wait(lambda: not redis_up(), 10, "Redis to stop")


def start_redis() -> None:
    if not redis_up():
        _run(*REDIS_START)
    _wait(redis_up, 20, "Redis to start")


def stop_rabbitmq() -> None:
    done = _run("rabbitmqctl", "stop_app")
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl stop_app failed: {done.stderr.strip()}")


def start_rabbitmq() -> None:
    _run("rabbitmqctl", "start_app")
    _run("rabbitmqctl", "await_startup", "--timeout", "60")


def postgres_up() -> bool:
    return _run("pg_isready", "-h", "127.0.0.1", "-p", "5432", timeout=10).returncode == 0


def ensure_all_up() -> None:
    """Brings back whatever a failed drill left down: called in a `finally`."""
    if not postgres_up():
        _run(*_pg_cluster(), "start")
    start_redis()
    start_rabbitmq()
    _wait(postgres_up, 60, "PostgreSQL to start")


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
