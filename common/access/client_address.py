"""Whose client address a server believes: the one rule auth and loyalty both apply.

The client's address feeds the guessing and login throttles, so it must travel with an
identity that vouches for it, never with a guess a caller can make up:

1. `x-client-address` signed by the gateway: `x-client-address-signature` is
   HMAC-SHA256(CLIENT_ADDRESS_KEY, address NUL x-request-id), hex. The gateway and the
   servers share the key (`make run` makes one per run); a caller without it cannot sign,
   and binding the request id means a signature is good for the request it was made for.
2. `x-client-address` unsigned, vouched for by a service account whose token has the scope
   `client-address:forward` (a backend such as billing acting for its end user): the call's
   own token, or, when `authorization` carries the end user's token, the service's token in
   `x-client-address-authorization: Bearer …`. A token there that does not verify fails the
   call (UNAUTHENTICATED), so a misconfigured backend learns it at once.
3. Otherwise the gRPC peer, or `x-forwarded-for` when the peer is one of the trusted peers
   (AUTH_TRUSTED_PEERS / LOYALTY_TRUSTED_PEERS; common/access/trust.py) or the edge, over its
   unix socket (common.processes.edge).

A claimed address that is not an IP address is ignored (the caller keeps its own)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from common.access.access_tokens import Identity, bearer_token
from common.access.scopes import CLIENT_ADDRESS_FORWARD
from common.access.trust import Network, grpc_client_address

ADDRESS = "x-client-address"
SIGNATURE = "x-client-address-signature"
VOUCHER = "x-client-address-authorization"
REQUEST_ID = "x-request-id"

Metadata = Iterable[tuple[str, object]]
Verify = Callable[[str | None], Awaitable[Identity]]


def signature(key: bytes, address: str, request_id: str) -> str:
    message = address.encode() + b"\x00" + request_id.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def vouched(key: bytes, address: str, request_id: str) -> list[tuple[str, str]]:
    """The gateway's metadata for the address it saw; none when the key is off (empty)."""
    if not key:
        return []
    return [(ADDRESS, address), (SIGNATURE, signature(key, address, request_id))]


def _first(metadata: Sequence[tuple[str, object]], name: str) -> str:
    for key, value in metadata:
        if key == name and isinstance(value, str):
            return value
    return ""


def _ip_text(text: str) -> str | None:
    """The address in its canonical form, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressRule:
    # The gateway's signing key, shared with it; empty: no signed address is believed.
    key: bytes = b""
    # Peers whose x-forwarded-for is believed.
    trusted_peers: Sequence[Network] = ()

    def _signed(self, metadata: Sequence[tuple[str, object]], claimed: str) -> bool:
        given = _first(metadata, SIGNATURE)
        if not self.key or not given:
            return False
        expected = signature(self.key, claimed, _first(metadata, REQUEST_ID))
        return hmac.compare_digest(expected, given)

    def client_address(
        self, metadata: Metadata, peer: str | None, voucher: Identity | None = None
    ) -> str:
        """The address to judge this call by (see the module's rules, in their order);
        `voucher` is whoever vouches for an unsigned address (see `voucher`)."""
        entries = list(metadata or ())
        claimed = _first(entries, ADDRESS)
        address = _ip_text(claimed) if claimed else None
        if address is not None:
            if self._signed(entries, claimed):
                return address
            if voucher is not None and voucher.has_scope(CLIENT_ADDRESS_FORWARD):
                return address
        return grpc_client_address(entries, peer, self.trusted_peers)


async def voucher(
    metadata: Metadata, verify: Verify, caller: Identity | None = None
) -> Identity | None:
    """Who vouches for an unsigned x-client-address: the service token in
    x-client-address-authorization when there is one (verified: a bad one fails the call),
    else the call's own principal."""
    entries = [(k, v) for k, v in metadata or () if k == VOUCHER]
    if not entries:
        return caller
    return await verify(bearer_token([("authorization", v) for _, v in entries]))


def key_bytes(text: str) -> bytes:
    """CLIENT_ADDRESS_KEY as the HMAC key (its UTF-8 bytes); empty turns signing off."""
    return text.encode()


# No key and no trusted peer: every caller is its own gRPC peer (or a scoped service's word).
PEER_ONLY = AddressRule()
