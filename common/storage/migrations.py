"""Versioned SQL migrations: applied in order, each in a transaction, under an advisory lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from common.storage.db import retrying
from common.telemetry.logs import get_logger

log = get_logger(__name__)

# Any fixed number: replicas migrating at once queue on it instead of racing.
_LOCK_ID = 0x6C6F79616C7479


class MigrationError(SystemExit):
    """A migration cannot be applied, or an applied one was changed."""


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def read_migrations(directory: Path) -> list[Migration]:
    return [Migration(p.stem, p.read_text()) for p in sorted(directory.glob("*.sql"))]


def _database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def _maintenance_dsn(dsn: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/postgres"))


async def _connect(dsn: str) -> asyncpg.Connection:
    async for attempt in retrying("postgres"):
        with attempt:
            connection: asyncpg.Connection = await asyncpg.connect(dsn)
            return connection
    raise AssertionError("unreachable")


async def ensure_database(dsn: str) -> None:
    name = _database_name(dsn)
    conn = await _connect(_maintenance_dsn(dsn))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("database_created", database=name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another replica created it first
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    conn = await _connect(_maintenance_dsn(dsn))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_database_name(dsn)}" WITH (FORCE)')
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = dict(await conn.fetch("SELECT version, checksum FROM schema_migrations"))
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version} was changed after it was applied;"
                    " add a new migration instead of editing an applied one"
                )
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                migration.version,
                migration.checksum,
            )
        done.append(migration.version)
        log.info("migration_applied", version=migration.version)
    return done


async def migrate(dsn: str, directory: Path) -> list[str]:
    """Create the database if needed and apply every pending migration; returns their versions."""
    await ensure_database(dsn)
    conn = await _connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            return await _apply_pending(conn, read_migrations(directory))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
