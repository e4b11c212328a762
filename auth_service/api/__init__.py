"""gRPC servicers: parse, call the use case, map the result."""
