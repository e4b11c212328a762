"""The system as `make run REPLICAS=2` starts it, on databases, Redis keys and broker names
of the drills' own (dropped afterwards), on ports that do not clash with a `make run`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import redis.asyncio as redis

from common.storage.migrations import drop_database

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql://postgres@127.0.0.1:5432"
RUN = f"drills{os.getpid()}"

ENV = {
    "AUTH_DATABASE_URL": f"{PG}/auth_{RUN}",
    "LOYALTY_DATABASE_URL": f"{PG}/loyalty_{RUN}",
    "REDIS_KEY_PREFIX": f"{RUN}:",
    "USER_EVENTS_EXCHANGE": f"loyalty.auth.events.{RUN}",
    "LOYALTY_EVENTS_QUEUE": f"loyalty.user-events.{RUN}",
    "AUTH_GRPC_ADDR": "127.0.0.1:53051",
    "LOYALTY_GRPC_ADDR": "127.0.0.1:53052",
    "GATEWAY_HTTP_ADDR": "127.0.0.1:18380",
    "AUTH_METRICS_ADDR": "",
    "LOYALTY_METRICS_ADDR": "",
    "GATEWAY_METRICS_ADDR": "",
    "LOG_LEVEL": "WARNING",
    "SENTRY_DSN": "",
    # Every registration and login of the drills comes from one address.
    "AUTH_LOGIN_LIMIT_PER_ADDRESS": "100000",
    "AUTH_REGISTER_LIMIT_PER_ADDRESS": "100000",
    "CONSUMER_RETRY_DELAYS": "[0.5, 1, 2]",
}


# The processes' own logs (JSON lines on stderr), kept for when a drill fails.
LOG_PATH = Path(tempfile.gettempdir()) / f"{RUN}.log"


@dataclass
class System:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{ENV['GATEWAY_HTTP_ADDR']}"

    def pid_of(self, name: str, last: bool = False) -> int:
        """The pid the launcher printed for `name` (say, `loyalty#1`): the first, or the
        latest (`last`) when the launcher has started it again since."""
        found = [
            int(match.group(1))
            for line in list(self.output)
            if (match := re.match(rf"^{re.escape(name)}\s+\S+\s+\S+\s+pid (\d+)$", line.strip()))
        ]
        if not found:
            raise LookupError(f"{name} not in the launcher's output")
        return found[-1] if last else found[0]

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.output)


def start(env: dict[str, str] | None = None) -> System:
    with LOG_PATH.open("w") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", "REPLICAS=2"],
            cwd=ROOT,
            env={**os.environ, **ENV, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    system = System(process)
    threading.Thread(target=_read, args=(system,), daemon=True).start()
    deadline = time.monotonic() + 180
    while not system.saw("ready:"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                "make run REPLICAS=2 did not get ready:\n" + "\n".join(system.output)
            )
        time.sleep(0.2)
    return system


def _read(system: System) -> None:
    assert system.process.stdout is not None
    for line in system.process.stdout:
        system.output.append(line.rstrip())


def stop(system: System) -> None:
    """Ctrl-C, as a user stops `make run`."""
    if system.process.poll() is None:
        os.killpg(system.process.pid, signal.SIGINT)
        try:
            system.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(system.process.pid, signal.SIGKILL)
            system.process.wait()


async def drop_everything() -> None:
    """The drills' databases, Redis keys and broker names."""
    for variable in ("AUTH_DATABASE_URL", "LOYALTY_DATABASE_URL"):
        with contextlib.suppress(Exception):
            await drop_database(ENV[variable])
    with contextlib.suppress(Exception):
        client = redis.from_url("redis://127.0.0.1:6379/0")
        keys = [k async for k in client.scan_iter(match=f"{RUN}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    with contextlib.suppress(Exception):
        await _drop_broker_names()


async def _drop_broker_names() -> None:
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_queues", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = [ENV["USER_EVENTS_EXCHANGE"], *(n for n in listed.stdout.split() if RUN in n)]
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        for name in names:
            for delete in ("queue_delete", "exchange_delete"):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await getattr(channel, delete)(name)
                with contextlib.suppress(Exception):
                    await channel.close()
