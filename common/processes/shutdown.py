"""SIGTERM means "stop cleanly": exit status 0 at any stage, not death by the signal."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_0(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def exit_0_on_sigterm() -> None:
    """Installed first thing in every process. While a process still waits for its
    dependencies (before its own graceful handler is in place) SIGTERM ends it with status 0
    instead of killing it; and uvicorn, which re-raises the signal once it has stopped
    gracefully, then also ends with 0. Orchestrators read anything else as a crash."""
    signal.signal(signal.SIGTERM, _exit_0)
