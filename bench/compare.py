"""Two versions of the code side by side: what a change costs or saves in CPU per call.

    .venv/bin/python -m bench.compare BASELINE [--rounds 5] [--seconds 8]
        [--transport http|grpc] [--tracing RATIO]

BASELINE is another checkout (a `git worktree` or clone of the commit to compare against; its
`protogen/` made by `make install`). Each round starts three systems, as `make run` starts them
(loyalty behind the edge): this checkout, BASELINE, and BASELINE again, and loads all three at
once with ApplyPromoCode, paced alike (as bench.tracing_bench does: 80% of the slowest one's
rate in a short closed-loop probe). BASELINE's second system is the control: what two systems
of the same code differ by on this machine in the same moments (an A/A comparison). A change
whose figure is not well outside the control's is not measured here.

Each process's CPU per call is reported against BASELINE's in the same round, and the median
over the rounds; the edge's own CPU is left out, as in the tracing benchmark. Side by side,
every moment of a shared machine falls on both versions alike: run one after the other, the
same code's rounds differed by more than the changes this is for (docs/performance-notes.md)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import grpc

from bench import tracing_bench
from bench.load import drive
from bench.spike import CAPACITY_CLIENTS, TAKEN, Outcome, open_loop
from bench.system import ROOT, System, running

SERVICES = ["auth_service", "loyalty_service", "gateway"]
THIS, BASELINE, CONTROL = "this", "baseline", "baseline again"
# Three systems and the load share two cores: a stall of one system had its edge refuse
# dozens of calls, past its queue's 16 places or 100 ms (a refused call costs the services
# nothing, which would flatter that system). A longer queue and its longest bound leave the
# calls served; the edge's overload refusals are not what is compared here.
PATIENT_EDGE = {"EDGE_QUEUED": "256", "EDGE_QUEUE_TIMEOUT_MS": "1000"}

# A round: each system's CPU seconds per call, by process.
Round = dict[str, dict[str, float]]


async def _round(systems: dict[str, System], seconds: float, transport: str) -> Round:
    async with AsyncExitStack() as stack:
        ready = await asyncio.gather(*(tracing_bench._loaded(s, stack) for s in systems.values()))
        loaded = dict(zip(systems, ready, strict=True))
        await asyncio.gather(
            *(drive("warm-up", one.over_http, CAPACITY_CLIENTS, 2) for one in ready)
        )
        calls = {s: getattr(one, f"over_{transport}") for s, one in loaded.items()}
        probe = await asyncio.gather(
            *(drive("probe", c, CAPACITY_CLIENTS, tracing_bench.PROBE_S) for c in calls.values())
        )
        pace = tracing_bench.PACE * min(result.answered_rps for result in probe)
        before = {s: tracing_bench.cpu_seconds(one.system) for s, one in loaded.items()}
        results = await asyncio.gather(*(_paced(c, pace, seconds) for c in calls.values()))
        after = {s: tracing_bench.cpu_seconds(one.system) for s, one in loaded.items()}
    measured: Round = {}
    for name, (calls_made, failed) in zip(loaded, results, strict=True):
        if failed:
            # A failed call costs less than a served one: the round would flatter its system.
            raise SystemExit(f"{name}: {sum(failed.values())} of {calls_made} failed: {failed}")
        spent = {p: after[name][p] - before[name][p] for p in after[name]}
        measured[name] = {p: s / calls_made for p, s in spent.items()}
        measured[name]["all"] = sum(spent.values()) / calls_made
    print(
        f"  paced at {pace:.0f}/s: "
        + "; ".join(
            f"{name} " + ", ".join(f"{p} {v * 1e6:.0f}" for p, v in per.items())
            for name, per in measured.items()
        )
        + " (µs per call)",
        flush=True,
    )
    return measured


async def _paced(
    call: Callable[[int], Awaitable[object]], rate: float, seconds: float
) -> tuple[int, Counter[str]]:
    """`call` at `rate` a second, open loop: the calls made, and the failures by kind."""
    failed: Counter[str] = Counter()

    async def one(i: int) -> Outcome:
        try:
            await call(i)
        except grpc.aio.AioRpcError as error:
            failed[f"{error.code().name}: {error.details()}"] += 1
        except Exception as error:  # the HTTP call's status, or the client's own failure
            failed[f"{type(error).__name__} {error}"] += 1
        return TAKEN

    arrivals = await open_loop(one, rate, seconds)
    return len(arrivals.outcomes), failed


def measure(
    baseline: Path, rounds: int, seconds: float, transport: str, ratio: str | None
) -> list[Round]:
    sources = {THIS: ROOT, BASELINE: baseline, CONTROL: baseline}
    measured = []
    for _ in range(rounds):
        with ExitStack() as stack:
            sinks = {s: stack.enter_context(tracing_bench.sink()) for s in sources if ratio}
            systems = {
                name: stack.enter_context(
                    running(
                        SERVICES,
                        {
                            **tracing_bench.tracing_env(ratio, sinks[name][1] if ratio else ""),
                            **tracing_bench.QUIET,
                            **PATIENT_EDGE,
                        },
                        source=source,
                        edge=True,
                    )
                )
                for name, source in sources.items()
            }
            measured.append(asyncio.run(_round(systems, seconds, transport)))
    return measured


def against_baseline(rounds: list[Round], name: str) -> dict[str, float]:
    """`name`'s CPU per call against the baseline's in the same round, by process: the median
    over the rounds of (name / baseline - 1)."""
    return {
        process: statistics.median(r[name][process] / r[BASELINE][process] - 1 for r in rounds)
        for process in rounds[0][BASELINE]
    }


def summary(rounds: list[Round]) -> list[str]:
    change, control = against_baseline(rounds, THIS), against_baseline(rounds, CONTROL)
    lines = [f"CPU per call against the baseline, median of {len(rounds)} rounds:"]
    lines += [
        f"  {process:>16}: this {change[process]:+.1%}   (control, baseline again:"
        f" {control[process]:+.1%})"
        for process in change
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--transport", choices=("http", "grpc"), default="http")
    parser.add_argument(
        "--tracing", default=None, help="sampling ratio on all three (off if unset)"
    )
    args = parser.parse_args()
    if not (args.baseline / "protogen").is_dir():
        raise SystemExit(f"{args.baseline}: not a checkout with protogen/ (run make install there)")
    rounds = measure(args.baseline, args.rounds, args.seconds, args.transport, args.tracing)
    print("\n".join(summary(rounds)))


if __name__ == "__main__":
    main()
