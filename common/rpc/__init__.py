"""gRPC plumbing both services share: server wiring, channels, errors, request rules, pages."""
