"""Auth's background jobs: the outbox relay and the revocation keeper."""
