"""The README cannot rot: every shell block in it runs as written, top to bottom, each in a new
shell, against the system started with the README's own `make run`.

The only change made to a block is the addresses: the processes here listen on free ports
instead of the defaults, so that test runs never clash with each other or with a `make run`
going on the same machine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.ports import free_port
from tests.e2e.processes import ROOT

DEFAULTS = {
    "AUTH_GRPC_ADDR": "127.0.0.1:50051",
    "LOYALTY_GRPC_ADDR": "127.0.0.1:50052",
    "GATEWAY_HTTP_ADDR": "localhost:8080",
}
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def shell_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def system() -> Iterator[dict[str, str]]:
    env = {**os.environ, **{variable: f"127.0.0.1:{free_port()}" for variable in DEFAULTS}}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(env["GATEWAY_HTTP_ADDR"]):
            assert process.poll() is None, "make run exited during start-up"
            assert time.monotonic() < deadline, "the system did not become healthy"
            time.sleep(0.2)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _healthy(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _localised(block: str, env: dict[str, str]) -> str:
    for variable, default in DEFAULTS.items():
        block = block.replace(default, env[variable])
    return block.replace("localhost:8080", env["GATEWAY_HTTP_ADDR"])


def test_the_first_block_is_the_two_set_up_commands() -> None:
    first = shell_blocks()[0]
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make run", "make test"]


def test_every_other_shell_block_runs_as_written(system: dict[str, str]) -> None:
    blocks = shell_blocks()[1:]
    assert len(blocks) >= 2, "the grpcurl and curl sessions"
    for block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _localised(block, system)],
            env=system,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{block}\nfailed:\n{done.stdout}\n{done.stderr}"
        # curl --fail-with-body and grpcurl exit non-zero on an error status; a `null` would
        # be a value the block failed to extract.
        assert "null" not in done.stdout.split(), f"{block}\ngave a null:\n{done.stdout}"
