"""The development signing key, created once however many replicas start together."""

from __future__ import annotations

from typing import Any


async def dev_key_pem(conn: Any, candidate_pem: str) -> str:
    await conn.execute(
        "INSERT INTO dev_signing_key (id, private_pem) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        candidate_pem,
    )
    pem: str = await conn.fetchval("SELECT private_pem FROM dev_signing_key WHERE id = 1")
    return pem
