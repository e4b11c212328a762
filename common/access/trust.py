"""Whose word about a client's address is believed: X-Forwarded-For only from trusted peers.

A peer (the TCP connection's other end) is trusted when it is in a configured list of
addresses or CIDR ranges. The client is then the right-most address of X-Forwarded-For that
is not itself trusted, walking back from the peer: everything left of it could be forged by
the client, everything right of it was appended by proxies we run."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import AfterValidator

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ADDRESS_LENGTH = 64
UNIX_PEER = "unix:"  # how gRPC names a peer that came over a unix socket


def parse_networks(text: str) -> tuple[Network, ...]:
    """'10.0.0.5, 10.1.0.0/16, ::1' → networks; ValueError naming the bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _networks_text(text: str) -> str:
    parse_networks(text)
    return text


# A settings field: comma-separated addresses or CIDR ranges, checked at start.
TrustedNetworks = Annotated[str, AfterValidator(_networks_text)]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def is_trusted(address: str, networks: Sequence[Network]) -> bool:
    if not networks:  # the default: nobody's word is taken, and no address need be parsed
        return False
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)


def client_address(
    peer: str, forwarded: Iterable[str], networks: Sequence[Network], local: bool = False
) -> str:
    """The client's address: the peer's own, unless the peer is trusted to forward one (it is
    in `networks`, or it is `local`: the edge, over its unix socket)."""
    if not local and not is_trusted(peer, networks):
        return peer[:MAX_ADDRESS_LENGTH]
    hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        if _ip(hop) is None:
            break  # garbage in the chain: nothing left of it can be believed
        client = hop.strip("[]")
        if not is_trusted(hop, networks):
            break
    return client[:MAX_ADDRESS_LENGTH]


def grpc_peer_host(peer: str | None) -> str:
    """'ipv4:127.0.0.1:5000' → '127.0.0.1'; 'ipv6:[::1]:5000' → '::1'; else the text."""
    if not peer:
        return "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").split("%")[0]
    return peer[:MAX_ADDRESS_LENGTH]


def grpc_client_address(
    metadata: Iterable[tuple[str, object]], peer: str | None, networks: Sequence[Network]
) -> str:
    """The caller of a gRPC call: x-forwarded-for metadata believed only from trusted peers, and
    from a unix-socket peer: the services listen on one only for the edge, in a folder only
    the system's user may enter (common.processes.edge), and the edge appends its own TCP
    peer's address last, so the hop believed is never the caller's own word."""
    forwarded = [str(v) for k, v in metadata if k == "x-forwarded-for"]
    local = peer is not None and peer.startswith(UNIX_PEER)
    return client_address(grpc_peer_host(peer), forwarded, networks, local)
