"""Whose client address a server believes (common/access/client_address.py): the gateway's
signed word, a scoped service's word, a trusted peer's x-forwarded-for, else the peer."""

from __future__ import annotations

import ipaddress

from common.access.access_tokens import Principal, ServicePrincipal
from common.access.client_address import AddressRule, signature, vouched
from common.access.trust import parse_networks

KEY = b"shared by the gateway and the servers"
PEER = "ipv4:10.0.0.9:40000"


def _service(*scopes: str) -> ServicePrincipal:
    return ServicePrincipal("billing", frozenset(scopes), "service:billing", "t", 0)


def _user() -> Principal:
    return Principal("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "admin", "s", "t", 0)


def _signed(address: str, request_id: str = "r-1") -> list[tuple[str, str]]:
    return [("x-request-id", request_id), *vouched(KEY, address, request_id)]


def test_the_gateways_signed_address_is_believed() -> None:
    rule = AddressRule(KEY)
    assert rule.client_address(_signed("203.0.113.7"), PEER) == "203.0.113.7"
    assert rule.client_address(_signed("2001:db8::1"), PEER) == "2001:db8::1"


def test_an_unsigned_or_badly_signed_address_leaves_the_caller_its_own() -> None:
    rule = AddressRule(KEY)
    unsigned = [("x-request-id", "r-1"), ("x-client-address", "203.0.113.7")]
    forged = [*unsigned, ("x-client-address-signature", signature(b"guess", "203.0.113.7", "r-1"))]
    # A good signature of another request: bound to its request id, so not replayable here.
    replayed = [
        ("x-request-id", "r-2"),
        *[(k, v) for k, v in _signed("203.0.113.7", "r-1") if k != "x-request-id"],
    ]
    for metadata in (unsigned, forged, replayed):
        assert rule.client_address(metadata, PEER) == "10.0.0.9"
    # With the key off, even the gateway's own signature moves nothing.
    assert AddressRule(b"").client_address(_signed("203.0.113.7"), PEER) == "10.0.0.9"


def test_a_service_with_the_scope_vouches_for_its_users_address_without_a_signature() -> None:
    rule = AddressRule()
    claim = [("x-client-address", "198.51.100.4")]
    assert rule.client_address(claim, PEER, _service("client-address:forward")) == "198.51.100.4"
    assert rule.client_address(claim, PEER, _service("purchases:settle")) == "10.0.0.9"
    assert rule.client_address(claim, PEER, _user()) == "10.0.0.9"  # admins neither


def test_x_forwarded_for_only_from_trusted_peers_and_garbage_is_ignored() -> None:
    forwarded = [("x-forwarded-for", "198.51.100.4")]
    assert AddressRule(KEY).client_address(forwarded, PEER) == "10.0.0.9"
    trusting = AddressRule(KEY, parse_networks("10.0.0.0/8"))
    assert trusting.client_address(forwarded, PEER) == "198.51.100.4"
    service = _service("client-address:forward")
    for junk in ("not an address", "1.2.3.4, 5.6.7.8", "", "x" * 5000):
        claim = [("x-client-address", junk)]
        assert AddressRule(KEY).client_address(claim, PEER, service) == "10.0.0.9"
    # Whatever is believed is a canonical IP address (so one client has one bucket).
    found = AddressRule().client_address([("x-client-address", "2001:DB8:0::1")], PEER, service)
    assert found == str(ipaddress.ip_address("2001:db8::1"))
