"""PostgreSQL and Redis connections, the driver's errors, migrations."""
