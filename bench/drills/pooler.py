"""A PgBouncer of its own, in transaction mode, on a free port in front of the machine's
PostgreSQL: for the drill and the test that run real traffic through a pooler.

Debian's pgbouncer refuses to run as root, so as root it runs as `postgres` (`-u`), from a
directory that user can read and write."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.ports import free_port

CONFIG = """[databases]
* = host={host} port={port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
pool_mode = transaction
auth_type = any
max_client_conn = 500
default_pool_size = {pool_size}
ignore_startup_parameters = extra_float_digits
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
unix_socket_dir =
"""


def binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        raise RuntimeError("pgbouncer is not installed (scripts/system_deps.sh installs it)")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class PgBouncer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def url(self, direct: str) -> str:
        """The same database as `direct` (a postgresql:// URL), through this pooler."""
        parts = urlsplit(direct)
        user = parts.username or "postgres"
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{self.port}"))

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start(postgres: str, pool_size: int = 20, deadline_s: float = 20) -> PgBouncer:
    """PgBouncer in transaction mode in front of `postgres` (a postgresql:// URL of the server;
    its database part is ignored: every database is passed through)."""
    server = urlsplit(postgres)
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer"))
    directory.chmod(0o777)  # the `postgres` user writes its log and pid file here
    port = free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            host=server.hostname or "127.0.0.1",
            port=server.port or 5432,
            user=server.username or "postgres",
            listen=port,
            pool_size=pool_size,
            directory=directory,
        )
    )
    config.chmod(0o644)
    command = [binary(), str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = PgBouncer(process, port, directory)
    deadline = time.monotonic() + deadline_s
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stderr = process.stderr.read().decode() if process.stderr else ""
            bouncer.stop()
            raise RuntimeError(f"pgbouncer did not start: {stderr}{bouncer.log()}")
        time.sleep(0.05)
    return bouncer
