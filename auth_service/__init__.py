"""The auth service: users, passwords, sessions and JWTs over gRPC."""
