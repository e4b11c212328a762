"""`python -m common.processes.edge`: the edge, from its environment (see the package)."""

import os
import sys

from common.processes.edge import EdgeSettings, run

sys.exit(run(EdgeSettings.from_env(dict(os.environ))))
