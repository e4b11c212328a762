"""The HTTP/JSON gateway: routes from the protos' google.api.http annotations, forwarded to gRPC."""
