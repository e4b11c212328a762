"""A worker that dies as soon as it starts (`python -m tests.e2e.crashing_worker serve`): what a
supervisor sees when every worker crashes at start, the crash loop it must give up on."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.exit(3)
