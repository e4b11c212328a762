"""Where loyalty spends its time under UsePromoCode load: py-spy samples of the real process.

.venv/bin/python -m bench.profile [--seconds 10]   (needs py-spy: pip install py-spy)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
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


async def load_and_profile(system: System, seconds: float) -> str:
    clients = Clients(system)
    await clients.open()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp) / "loyalty.txt"
            spy = _spy(system.processes["loyalty_service"].pid, seconds, output)
            await drive("UsePromoCode", clients.use, 50, seconds + 1)
            await asyncio.to_thread(spy.wait, 60)
            return output.read_text()
    finally:
        await clients.close()


def main(seconds: float) -> None:
    with running(["auth_service", "loyalty_service", "gateway"]) as system:
        collapsed = asyncio.run(load_and_profile(system, seconds))
    print("\n".join(summarize(collapsed)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    main(parser.parse_args().seconds)
