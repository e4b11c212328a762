"""Errors the domain and use cases raise; the transport maps them to gRPC once (grpc_errors)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class ErrorKind(Enum):
    """The gRPC code an error becomes, named without importing grpc into the domain."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class ServiceError(Exception):
    """A refusal with a machine-readable reason, sent as google.rpc.ErrorInfo."""

    kind: ErrorKind
    reason: str
    message: str
    domain: str
    metadata: dict[str, str] = field(default_factory=dict)
    # Seconds until a retry can succeed: sent as google.rpc.RetryInfo (HTTP: Retry-After).
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class InvalidArgument(Exception):
    """Malformed input: INVALID_ARGUMENT with a google.rpc.BadRequest naming each field."""

    violations: list[FieldViolation]

    @classmethod
    def of(cls, field_name: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_name, description)])

    def __str__(self) -> str:
        return "; ".join(f"{v.field}: {v.description}" for v in self.violations)


def too_many(reason: str, message: str, domain: str, retry_after: float) -> ServiceError:
    """RESOURCE_EXHAUSTED with the real time left, for a throttled caller."""
    seconds = max(1, math.ceil(retry_after))
    return ServiceError(
        ErrorKind.RESOURCE_EXHAUSTED,
        reason,
        f"{message}; try again in {seconds} second{'s' if seconds != 1 else ''}",
        domain,
        retry_after=seconds,
    )


def unauthenticated(message: str, domain: str) -> ServiceError:
    return ServiceError(ErrorKind.UNAUTHENTICATED, "UNAUTHENTICATED", message, domain)


def permission_denied(message: str, domain: str) -> ServiceError:
    return ServiceError(ErrorKind.PERMISSION_DENIED, "PERMISSION_DENIED", message, domain)
