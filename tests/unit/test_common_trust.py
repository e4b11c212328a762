"""Whose X-Forwarded-For is believed, and what a bad trusted-proxy setting does."""

from __future__ import annotations

import pytest

from auth_service.config import AuthSettings
from common import config
from common.access.trust import client_address, grpc_peer_host, parse_networks
from gateway.config import GatewaySettings

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.10, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", ["1.2.3.4"], "203.0.113.5"),  # untrusted peer: its own address
        ("127.0.0.1", ["1.2.3.4"], "127.0.0.1"),  # loopback is not trusted unless listed
        ("10.1.2.3", ["1.2.3.4"], "1.2.3.4"),
        ("10.1.2.3", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # the client's own claim is left of it
        ("10.1.2.3", ["1.2.3.4, 10.9.9.9"], "1.2.3.4"),  # two of our proxies in a row
        ("10.1.2.3", ["1.2.3.4", "10.9.9.9"], "1.2.3.4"),  # the header sent twice
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["not-an-ip, 1.2.3.4"], "1.2.3.4"),
        ("10.1.2.3", ["1.2.3.4, garbage"], "10.1.2.3"),
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:10.0.0.1", ["1.2.3.4"], "1.2.3.4"),
    ],
)
def test_the_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == client


def test_grpc_peers() -> None:
    assert grpc_peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert grpc_peer_host("ipv6:[::1]:5000") == "::1"
    assert grpc_peer_host(None) == "unknown"


def test_empty_trusts_nobody() -> None:
    assert parse_networks("") == ()
    assert client_address("127.0.0.1", ["1.2.3.4"], parse_networks("")) == "127.0.0.1"


@pytest.mark.parametrize(
    ("settings", "variable"),
    [(GatewaySettings, "GATEWAY_TRUSTED_PROXIES"), (AuthSettings, "AUTH_TRUSTED_PEERS")],
)
@pytest.mark.parametrize("bad", ["10.0.0.0/33", "localhost", "10.0.0.1;10.0.0.2"])
def test_a_bad_trusted_list_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, settings: type[GatewaySettings], variable: str, bad: str
) -> None:
    monkeypatch.setenv(variable, bad)
    with pytest.raises(config.ConfigError) as stopped:
        config.load(settings)
    assert variable in str(stopped.value)
