"""Where loyalty and the gateway spend their CPU under UsePromoCode load: py-spy samples of the
real processes (each supervisor and its workers). Loyalty is sampled while 50 clients call Use
over gRPC, the gateway while 50 call it over HTTP; one at a time, so that the sampler's own CPU
is taken from one service's share only.

.venv/bin/python -m bench.profile [--seconds 10] [--output FILE]   (py-spy: the dev extras)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
from collections.abc import Awaitable
from pathlib import Path

from bench.load import drive
from bench.run import Clients
from bench.system import System, running


def summarize(collapsed: str, top: int = 15) -> list[str]:
    """Self and inclusive sample shares of each function, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            f.split(" (")[0] + " " + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in stack.split(";")
        ]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time (our code and the libraries under it):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top * 2)]
    return lines


def _spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
        # the service's workers (common.processes.supervisor), not only its supervisor
        "--subprocesses",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _profiled(pid: int, load: Awaitable[object], seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "stacks.txt"
        spy = _spy(pid, seconds, output)
        await load
        await asyncio.to_thread(spy.wait, 60)
        return output.read_text() if output.exists() else ""


async def load_and_profile(system: System, seconds: float) -> dict[str, str]:
    """py-spy's collapsed stacks of each service, under its own Use scenario."""
    clients = Clients(system)
    await clients.open()
    try:
        # Not sampled: the first calls warm caches and connections.
        await drive("warm-up", clients.use, 50, 2)
        loyalty = await _profiled(
            system.processes["loyalty_service"].pid,
            drive("UsePromoCode, gRPC", clients.use, 50, seconds + 1),
            seconds,
        )
        gateway = await _profiled(
            system.processes["gateway"].pid,
            drive(
                "UsePromoCode, HTTP",
                lambda i: clients.http_post("/v1/promocodes/use", i),
                50,
                seconds + 1,
            ),
            seconds,
        )
        return {
            "loyalty (UsePromoCode over gRPC)": loyalty,
            "gateway (UsePromoCode over HTTP)": gateway,
        }
    finally:
        await clients.close()


def report(stacks: dict[str, str], seconds: float) -> str:
    lines = [f"py-spy 0.4.3, {seconds:g} s per service, 50 calls in flight, active samples only"]
    for name, collapsed in stacks.items():
        lines += ["", f"== {name}", *(summarize(collapsed) if collapsed else ["no samples"])]
    return "\n".join(lines) + "\n"


def main(seconds: float, output: Path | None) -> None:
    with running(["auth_service", "loyalty_service", "gateway"]) as system:
        stacks = asyncio.run(load_and_profile(system, seconds))
    text = report(stacks, seconds)
    if output:
        output.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    main(arguments.seconds, arguments.output)
