"""The edge's configuration (common.processes.edge), the launcher's plan with it, and whose
x-forwarded-for a service believes behind it."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.rpc import status_pb2

from bench import admitted, edge_proxy, spike
from common.access.trust import grpc_client_address, parse_networks
from common.processes import edge, launcher
from common.rpc import deadlines


def test_the_edges_refusal_is_the_services_overload_status() -> None:
    headers = edge.refusal_headers(0.25, "edge")
    assert headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    encoded = headers[edge.DETAILS]
    assert "=" not in encoded  # gRPC's binary metadata is base64 without padding
    status = status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert status.message == headers["grpc-message"]
    # What a client waits before sending again, read as the bench's clients read it.
    assert admitted.status_details(status) == ("OVERLOADED", 0.25, "edge")
    # The same answer as the service's own, but for a note of who made it.
    assert spike.details_of(status.SerializeToString()) == ("OVERLOADED by edge", 0.25)


def test_the_edge_refuses_past_its_queue_or_always_at_zero() -> None:
    queued = edge_proxy.config("127.0.0.1:1", "127.0.0.1:2", 16, "/run/e", queued=8, servers=4)
    assert "if { queue(capped) ge 8 } !{ path_beg /grpc.health. /grpc.reflection. }" in queued
    assert queued.count("proto h2 maxconn 4") == 4  # 16 in flight over 4 connection pools
    assert "if TRUE !{" in edge_proxy.config("127.0.0.1:1", "127.0.0.1:2", 0, "/run/e")
    assert "forwardfor" not in queued  # the bench's echo is nobody's judge of addresses


def test_the_system_edge_holds_each_worker_to_its_share_over_its_socket() -> None:
    env = {"EDGE_ADDR": "127.0.0.1:50052", "EDGE_SOCKETS": "/run/x/loyalty0-", "EDGE_WORKERS": "2"}
    text = edge.EdgeSettings.from_env(env).config("/run/e")
    assert "bind 127.0.0.1:50052 proto h2" in text
    for worker in (0, 1):
        assert f"server s{worker} unix@/run/x/loyalty0-{worker}.sock proto h2 maxconn 8" in text
        # Probes and reflection go to the same workers, past the cap, whose state the capped
        # backend's checks keep: each socket is checked once.
        assert (
            f"server s{worker} unix@/run/x/loyalty0-{worker}.sock proto h2 maxconn 8 {edge.WATCHED}"
            in text
        )
        uncapped = (
            f"server s{worker} unix@/run/x/loyalty0-{worker}.sock proto h2 track capped/s{worker}"
        )
        assert uncapped in text
    assert text.count(edge.WATCHED) == 2
    assert "option forwardfor" in text  # the address loyalty judges the caller by
    assert f"queue(capped) ge {edge.QUEUED}" in text
    # A call waits in the queue for its time too, then has the overload answer in /run/e.
    assert f"timeout queue {edge.QUEUE_TIMEOUT_MS}ms" in text
    assert "errorfile 503 /run/e/overload.http" in text


def test_the_overload_answer_is_the_refusal_as_haproxy_reads_an_error_file() -> None:
    head, _, body = edge.overload_answer().partition("\r\n\r\n")
    assert body == ""  # no body: the headers end the stream, gRPC's trailers-only answer
    status_line, *fields = head.split("\r\n")
    assert status_line == "HTTP/1.1 200 OK"  # gRPC reads grpc-status from a 200 only
    headers = dict(field.split(": ", 1) for field in fields)
    assert headers["content-length"] == "0"
    refusal = edge.refusal_headers(edge.RETRY_AFTER_S, edge.DOMAIN)
    assert all(headers[k] == v for k, v in refusal.items())


def test_a_replicas_edge_falls_back_on_the_others_workers_and_watches_them_all() -> None:
    env = {
        "EDGE_ADDR": "127.0.0.1:50062",
        "EDGE_SOCKETS": "/run/x/loyalty1-",
        "EDGE_WORKERS": "2",
        "EDGE_BACKUP_SOCKETS": "/run/x/loyalty0-,/run/x/loyalty2-",
    }
    text = edge.EdgeSettings.from_env(env).config("/run/e")
    capped = text.split("\nbackend capped\n")[1].split("\nbackend ")[0]
    servers = [line.split()[2] for line in capped.splitlines() if line.startswith("  server")]
    assert servers[:2] == ["unix@/run/x/loyalty1-0.sock", "unix@/run/x/loyalty1-1.sock"]
    backups = [line for line in capped.splitlines() if " backup " in line]
    assert len(backups) == 2 * 2
    assert all("maxconn 8" in line and edge.WATCHED in line for line in backups)
    uncapped = text.split("\nbackend uncapped\n")[1]
    # The proxy stamps when it took a call, replacing a caller's own stamp.
    front = text.split("\nfrontend grpc\n")[1].split("\nbackend ")[0]
    assert f"  http-request set-header {deadlines.RECEIVED_HEADER} %[date(0,ms)]" in front
    # Every backup at once (HAProxy's default is the first alone): a dead replica's calls
    # get as many worker shares as it had.
    assert "  option allbackups" in capped.splitlines()
    assert "  option allbackups" in uncapped.splitlines()
    tracked = [line.split()[-1] for line in uncapped.splitlines() if " backup " in line]
    assert tracked == [f"capped/b{i}" for i in range(4)]
    # Alone, it has no one to fall back on.
    alone = {**env, "EDGE_BACKUP_SOCKETS": ""}
    assert "backup" not in edge.EdgeSettings.from_env(alone).config("/run/e")


def test_the_edge_refuses_a_queue_longer_than_a_service_believes_a_wait() -> None:
    base = {"EDGE_ADDR": "a:1", "EDGE_SOCKETS": "/x"}
    assert edge.EdgeSettings.from_env({**base, "EDGE_QUEUE_TIMEOUT_MS": "1000"}).queue_timeout_ms
    for too_long_or_none in ("1001", "0"):
        with pytest.raises(SystemExit, match="EDGE_QUEUE_TIMEOUT_MS"):
            edge.EdgeSettings.from_env({**base, "EDGE_QUEUE_TIMEOUT_MS": too_long_or_none})


def test_the_edge_says_which_setting_is_missing() -> None:
    with pytest.raises(SystemExit, match="EDGE_SOCKETS"):
        edge.EdgeSettings.from_env({"EDGE_ADDR": "127.0.0.1:1"})
    with pytest.raises(SystemExit, match="invalid literal"):
        edge.EdgeSettings.from_env(
            {"EDGE_ADDR": "a:1", "EDGE_SOCKETS": "/x", "EDGE_WORKERS": "two"}
        )


def test_a_worker_listens_on_its_own_socket_only_behind_an_edge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SERVICE_WORKER", raising=False)
    assert edge.listener("") == []
    assert edge.listener("/run/x/loyalty0-") == ["unix:/run/x/loyalty0-0.sock"]
    monkeypatch.setenv("SERVICE_WORKER", "1/2")
    assert edge.listener("/run/x/loyalty0-") == ["unix:/run/x/loyalty0-1.sock"]


def test_the_launcher_puts_an_edge_where_each_loyalty_replica_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOYALTY_GRPC_ADDR", "127.0.0.1:50052")
    monkeypatch.setenv("LOYALTY_WORKERS", "3")
    planned = launcher.with_edges(launcher.plan(2), "/run/x")
    by_name = {r.name: r for r in planned}
    assert sorted(by_name) == sorted(
        ["auth", "auth#1", "loyalty", "loyalty#1", "edge", "edge#1", "gateway"]
    )
    for k, public in enumerate(("127.0.0.1:50052", "127.0.0.1:50062")):
        suffix = f"#{k}" if k else ""
        front, behind = by_name[f"edge{suffix}"], by_name[f"loyalty{suffix}"]
        assert front.address == public
        assert behind.address == launcher.shifted(public, launcher.DIRECT_PORT_SHIFT)
        assert (
            front.env["EDGE_SOCKETS"] == behind.env["LOYALTY_EDGE_SOCKETS"] == f"/run/x/loyalty{k}-"
        )
        assert front.env["EDGE_WORKERS"] == "3"
        # Replica k's edge falls back on the other replica's workers.
        assert front.env["EDGE_BACKUP_SOCKETS"] == f"/run/x/loyalty{1 - k}-"
    # Every client still names the public addresses, which are the edges now.
    assert by_name["gateway"].env["LOYALTY_GRPC_ADDR"] == "ipv4:127.0.0.1:50052,127.0.0.1:50062"
    assert "LOYALTY_EDGE_SOCKETS" not in by_name["auth"].env


def test_behind_the_edge_the_address_it_appends_is_believed_and_nothing_left_of_it() -> None:
    spoofed_then_real = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "127.0.0.2")]
    assert grpc_client_address(spoofed_then_real, "unix:", ()) == "127.0.0.2"
    assert grpc_client_address([("x-forwarded-for", "203.0.113.9, 127.0.0.2")], "unix:", ()) == (
        "127.0.0.2"
    )
    # Over TCP the caller is its own peer, whatever it says, unless that peer is trusted.
    assert grpc_client_address(spoofed_then_real, "ipv4:127.0.0.1:4000", ()) == "127.0.0.1"
    trusted = parse_networks("127.0.0.1")
    assert grpc_client_address(spoofed_then_real, "ipv4:127.0.0.1:4000", trusted) == "127.0.0.2"
    # An abstract unix socket has no file permissions: anyone may connect, nobody is believed.
    assert grpc_client_address(spoofed_then_real, "unix-abstract:x", ()) == "unix-abstract:x"
