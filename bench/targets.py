"""Issue 27's targets as rows: each figure next to its target, met or not, whatever it is."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    figure: str
    target: str
    met: bool


def at_most(value: float, bound: float) -> bool:
    """False for a figure that could not be measured (NaN), never a silent pass."""
    return not math.isnan(value) and value <= bound


def at_least(value: float, bound: float) -> bool:
    return not math.isnan(value) and value >= bound


def share(value: float, of: float) -> float:
    return value / of if of > 0 else float("nan")


def table(targets: list[Target]) -> list[str]:
    lines = ["| target | figure | wanted | met |", "|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t.name} | {t.figure} | {t.target} | {'yes' if t.met else '**no**'} |")
    return lines


def not_measured(name: str, target: str, error: BaseException) -> Target:
    return Target(name, f"not measured: {type(error).__name__}: {error}"[:200], target, False)
