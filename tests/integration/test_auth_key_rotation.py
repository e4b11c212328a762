"""Signing-key rotation across two auth replicas with traffic going on: the next key is
published by every replica before anyone signs with it, so no valid token is refused on
either side of the switch; the previous key is retired (and erased) once its time is up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import json_format

from auth_service import app
from auth_service.domain import Role, Status, User
from auth_service.keys import (
    KeyState,
    StoredKey,
    every_replica_publishes,
    new_private_pem,
    ring_of,
    signing_key,
)
from common.access.access_tokens import TokenVerifier
from common.access.revocation import RevocationList
from common.rpc.channels import open_channel
from common.storage.migrations import drop_database
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import PG, RUN_ID, TEST_ENV
from tests.fixtures.auth import AuthTestServer, auth_settings, start_auth, stop_auth

DATABASE = f"{PG}/auth_keys_{RUN_ID}"


def test_the_ring_publishes_next_current_and_previous_and_signs_with_current() -> None:
    pems = [new_private_pem() for _ in range(4)]
    states = [KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS, KeyState.RETIRED]
    stored = [StoredKey(signing_key(p).kid, p, s) for p, s in zip(pems, states, strict=True)]
    ring = ring_of(stored)
    assert ring.current.kid == stored[1].kid
    assert ring.kids == sorted(s.kid for s in stored[:3])
    assert {k["kid"] for k in ring.jwks()["keys"]} == set(ring.kids)
    with pytest.raises(RuntimeError):
        ring_of([stored[0], stored[2]])  # no current key: a broken table, said so


def test_a_key_is_published_everywhere_only_when_every_replica_seen_lists_it() -> None:
    assert every_replica_publishes("k2", [["k1", "k2"], ["k2"]])
    assert not every_replica_publishes("k2", [["k1", "k2"], ["k1"]])
    assert every_replica_publishes("k2", [])


class Replica:
    """An auth replica in this process, with its key refresher running as `serve` runs it."""

    def __init__(self, server: AuthTestServer) -> None:
        self.server = server
        self.loop = asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        await self.server.app.keys.run()

    def token(self) -> tuple[str, str]:
        """A fresh access token from this replica, and the kid that signed it."""
        issuer = self.server.app.accounts.issuer
        user = User(str(uuid.uuid4()), "", Status.ACTIVE, Role.USER, 1)
        return issuer.access_token(user, str(uuid.uuid4())), issuer.key.kid


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    settings = auth_settings(auth_database_url=DATABASE, auth_key_refresh_seconds=0.2)
    servers = [await start_auth(settings, keeper=False)]
    servers.append(
        await start_auth(auth_settings(auth_database_url=DATABASE, auth_key_refresh_seconds=0.2))
    )
    started = [Replica(s) for s in servers]
    yield started
    for replica in started:
        replica.loop.cancel()
        await stop_auth(replica.server)
    await drop_database(DATABASE)


class RoundRobinJwks:
    """What loyalty does: GetJwks from whichever replica the balanced channel picks."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def __call__(self) -> dict[str, Any]:
        jwks = await self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return {
            "keys": [
                json_format.MessageToDict(k, preserving_proto_field_name=True) for k in jwks.keys
            ]
        }


async def _traffic(replicas: list[Replica], verifier: TokenVerifier, stop: asyncio.Event) -> Any:
    refused: list[str] = []
    kids: set[str] = set()
    calls = 0
    while not stop.is_set():
        for replica in replicas:
            token, kid = replica.token()
            kids.add(kid)
            calls += 1
            try:
                await verifier.verify(token)
            except Exception as error:
                refused.append(f"{kid}: {error}")
        await asyncio.sleep(0.02)
    return calls, kids, refused


async def _rotate_key(wait_seconds: int = 30) -> tuple[int, str]:
    """`python -m auth_service rotate-key`, as an operator runs it."""
    env = os.environ | TEST_ENV | {"AUTH_DATABASE_URL": DATABASE}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "auth_service",
        "rotate-key",
        "--timeout",
        str(wait_seconds),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def _states(conn: asyncpg.Connection) -> dict[str, str]:
    return dict(await conn.fetch("SELECT kid, state FROM signing_keys"))


async def test_rotation_mid_traffic_refuses_no_valid_token(replicas: list[Replica]) -> None:
    target = "ipv4:" + ",".join(r.server.address for r in replicas)
    channel = open_channel(target)
    redis_list = RevocationList(replicas[0].server.app.redis, TEST_ENV["REDIS_KEY_PREFIX"])
    verifier = TokenVerifier(RoundRobinJwks(channel), redis_list, "auth.loyalty")
    old_kid = replicas[0].server.app.accounts.issuer.key.kid
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic(replicas, verifier, stop))
    try:
        code, output = await _rotate_key()
        assert code == 0, output
        # Both replicas switch within a refresh or two; traffic goes on across the switch.
        async with asyncio.timeout(10):
            while any(r.server.app.accounts.issuer.key.kid == old_kid for r in replicas):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # traffic on the new key from both replicas
    finally:
        stop.set()
        calls, kids, refused = await traffic
        await channel.close()
    new_kid = replicas[0].server.app.accounts.issuer.key.kid
    assert new_kid in output and new_kid != old_kid
    assert refused == [] and calls > 20
    assert kids == {old_kid, new_kid}
    conn = await asyncpg.connect(DATABASE)
    try:
        assert await _states(conn) == {old_kid: "previous", new_kid: "current"}
        # The previous key stays published until its tokens have expired, then retires.
        jwks = await replicas[1].server.auth.GetJwks(auth_pb2.GetJwksRequest())
        assert {k.kid for k in jwks.keys} == {old_kid, new_kid}
        await conn.execute("UPDATE signing_keys SET retire_at = now() WHERE kid = $1", old_kid)
        await replicas[0].server.app.keys.refresh()
        assert await _states(conn) == {old_kid: "retired", new_kid: "current"}
        erased = "SELECT private_pem = '' FROM signing_keys WHERE kid = $1"
        assert await conn.fetchval(erased, old_kid)
        jwks = await replicas[0].server.auth.GetJwks(auth_pb2.GetJwksRequest())
        assert [k.kid for k in jwks.keys] == [new_kid]
    finally:
        await conn.close()


async def test_a_rotation_waits_for_a_replica_that_does_not_publish_the_next_key(
    replicas: list[Replica],
) -> None:
    """A replica seen lately that still lists only the old key holds the switch back."""
    conn = await asyncpg.connect(DATABASE)
    try:
        old_kid = replicas[0].server.app.accounts.issuer.key.kid
        stuck = asyncio.create_task(_keep_reporting(conn, [old_kid]))
        try:
            code, output = await _rotate_key(wait_seconds=2)
        finally:
            stuck.cancel()
            # Until its statement is cancelled too: the connection is shared with what follows.
            with contextlib.suppress(asyncio.CancelledError):
                await stuck
        assert code != 0 and "run it again to resume" in output
        states = await _states(conn)
        assert states[old_kid] == "current" and sorted(states.values()) == ["current", "next"]
    finally:
        await conn.close()


async def _keep_reporting(conn: asyncpg.Connection, kids: list[str]) -> None:
    while True:
        await conn.execute(
            "INSERT INTO key_sightings (replica, kids) VALUES ('stuck', $1)"
            " ON CONFLICT (replica) DO UPDATE SET kids = excluded.kids, seen_at = now()",
            kids,
        )
        await asyncio.sleep(0.1)


async def test_a_configured_key_never_seen_takes_over_and_the_old_one_stays_published(
    replicas: list[Replica],
) -> None:
    """Setting AUTH_JWT_PRIVATE_KEY to a new key and restarting still rotates: the new key
    becomes current, the old one previous (published); starting with it again changes nothing."""
    server = replicas[0].server
    old_kid = server.app.accounts.issuer.key.kid
    pem = new_private_pem()
    new_kid = signing_key(pem).kid
    keys = app.signing_keys(server.app.settings, server.app.pool, None)
    for _ in range(2):
        await keys.start(pem, configured=True)
    conn = await asyncpg.connect(DATABASE)
    try:
        assert await _states(conn) == {old_kid: "previous", new_kid: "current"}
    finally:
        await conn.close()
    ring = await keys.refresh()
    assert ring.current.kid == new_kid and set(ring.kids) == {old_kid, new_kid}
