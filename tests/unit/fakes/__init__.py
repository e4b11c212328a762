"""In-memory fakes of the services' own store interfaces (use_cases/ports.py), for unit tests
of the use cases; the real SQL is proven by tests/integration."""
