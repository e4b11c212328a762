"""The JWT public keys, fetched from auth over gRPC."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from common.access.access_tokens import TokenVerifier
from common.storage.db import retrying
from common.telemetry.logs import get_logger
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc

log = get_logger(__name__)


class AuthJwks:
    """Calls AuthService.GetJwks; the verifier calls it again when a token names a new kid."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def __call__(self) -> dict[str, Any]:
        jwks = await self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        keys = [json_format.MessageToDict(k, preserving_proto_field_name=True) for k in jwks.keys]
        return {"keys": keys}


async def load_keys(verifier: TokenVerifier, give_up_after: float) -> None:
    """Fetches the keys with backoff at start; if auth stays down, tokens fetch them later."""
    try:
        async for attempt in retrying("auth", give_up_after):
            with attempt:
                await verifier.refresh_keys()
    except Exception as error:
        log.warning("jwks_not_loaded_at_start", error=repr(error))
