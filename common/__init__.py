"""What more than one process needs, grouped by purpose: access (tokens, revocation, trust,
throttles), telemetry (logs, metrics, tracing, Sentry), processes (worker supervisor, launcher),
messaging (RabbitMQ, outbox), storage (PostgreSQL, Redis, migrations) and rpc (gRPC plumbing);
settings, domain errors and the user status at the top."""
