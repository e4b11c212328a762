"""CPU time per call: each process's user + system time over a scenario, divided by the calls it
made. On a shared machine it is far steadier than a rate: another tenant's load slows a
scenario down but barely changes the CPU each call costs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bench.system import worker_pids

# Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the command's ")": the
# command itself may hold spaces.
_UTIME, _STIME = 11, 12


def ticks_of(stat_line: str) -> int:
    """utime + stime, in clock ticks, of one /proc/<pid>/stat line."""
    fields = stat_line.rpartition(")")[2].split()
    return int(fields[_UTIME]) + int(fields[_STIME])


def _seconds(pid: int) -> float:
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # a worker that exited between the listing and the read
        return 0.0
    return ticks_of(line) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """CPU seconds a service's process and all its workers (common.processes.supervisor) have
    spent so far."""
    return sum(_seconds(p) for p in [pid, *worker_pids(pid)])


def snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: process_seconds(pid) for name, pid in pids.items()}


def process_per_call_us(pid: int, before_s: float, answered: int) -> float:
    """One process's CPU since `before_s` (process_seconds) per call it answered, in µs."""
    return (process_seconds(pid) - before_s) / max(answered, 1) * 1e6


def per_call_us(
    before: Mapping[str, float], after: Mapping[str, float], calls: int
) -> dict[str, float]:
    """Microseconds of CPU per call of each process between two snapshots."""
    return {name: (after[name] - before[name]) / max(calls, 1) * 1e6 for name in after}
