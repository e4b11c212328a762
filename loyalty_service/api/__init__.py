"""gRPC servicers: parse and validate, call the use case, map the result."""
