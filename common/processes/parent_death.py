"""A child process that dies with its parent: the kernel sends it a signal when the parent
ends, however the parent ended (a SIGKILLed launcher, supervisor or edge wrapper), so no
orphan keeps a port, a socket or calls that clients should take elsewhere."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1
# Looked up at import, never in a forked child: a dlopen there can deadlock on a loader lock
# that another thread of the parent (grpc's) held at the fork, and Popen then waits forever.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(signum: signal.Signals) -> None:
    """In a child before exec (Popen's `preexec_fn`): `signum` reaches it when its parent
    ends. Ctrl-C is its own again (the parent may have ignored SIGINT, and a child inherits
    that)."""
    _PRCTL(_PR_SET_PDEATHSIG, signum)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
