"""Running processes: the worker supervisor, the launcher, signals, event loop, health checks."""
