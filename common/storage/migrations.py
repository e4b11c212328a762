"""Versioned SQL migrations: applied in order, each in a transaction, under an advisory lock.

Then, under the same lock, the repeatable scripts (a service's server-side functions, one
`CREATE OR REPLACE FUNCTION` a file): each is applied again whenever its file changes, so a
rule is edited in place instead of re-declared by a new migration. What a repeatable script
cannot do (change a function's arguments or return type, drop it) is a versioned migration's
job; docs/architecture.md says when to use which."""

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


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return _checksum(self.sql)


@dataclass(frozen=True)
class Repeatable:
    """A script re-applied whenever it changes; `name` is its file name."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return _checksum(self.sql)


def read_migrations(directory: Path) -> list[Migration]:
    return [Migration(p.stem, p.read_text()) for p in sorted(directory.glob("*.sql"))]


def read_repeatables(directory: Path) -> list[Repeatable]:
    """By file name: a function that another must find at create time (an SQL-language body
    calling it) sorts first by a numeric prefix (`00_helper.sql`)."""
    if not directory.is_dir():  # a package built without its .sql files must not pass as none
        raise MigrationError(f"no directory of repeatable scripts at {directory}")
    return [Repeatable(p.name, p.read_text()) for p in sorted(directory.glob("*.sql"))]


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


async def _unknown_versions(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    rows = await conn.fetch(
        "SELECT version FROM schema_migrations WHERE NOT version = ANY($1::text[]) ORDER BY 1",
        [m.version for m in migrations],
    )
    return [row["version"] for row in rows]


async def _apply_repeatable(conn: asyncpg.Connection, script: Repeatable) -> None:
    try:
        async with conn.transaction():
            await conn.execute(script.sql)
            await conn.execute(
                "INSERT INTO schema_repeatables (name, checksum) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum,"
                " applied_at = now()",
                script.name,
                script.checksum,
            )
    except asyncpg.PostgresError as error:
        error.add_note(f"in the repeatable script {script.name}")
        raise
    log.info("repeatable_applied", name=script.name)


async def _apply_repeatables(conn: asyncpg.Connection, scripts: list[Repeatable]) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_repeatables ("
        " name text PRIMARY KEY, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    # A file taken away and later put back must be applied again, whatever its checksum.
    await conn.execute(
        "DELETE FROM schema_repeatables WHERE NOT name = ANY($1::text[])",
        [s.name for s in scripts],
    )
    recorded = dict(await conn.fetch("SELECT name, checksum FROM schema_repeatables"))
    changed = [s for s in scripts if recorded.get(s.name) != s.checksum]
    for script in changed:
        await _apply_repeatable(conn, script)
    return [s.name for s in changed]


async def _migrate_locked(
    conn: asyncpg.Connection, directory: Path, repeatable: Path | None
) -> list[str]:
    migrations = read_migrations(directory)
    # Read before anything runs, so that a missing directory fails a migrate that did nothing.
    scripts = None if repeatable is None else read_repeatables(repeatable)
    done = await _apply_pending(conn, migrations)
    if scripts is None:
        return done
    # Older code (a replica of the last release restarting mid-rollout) would put back the
    # bodies the newer release replaced; a schema it does not know tells it so.
    unknown = await _unknown_versions(conn, migrations)
    if unknown:
        log.warning("repeatables_skipped_database_is_newer", versions=unknown)
        return done
    return done + await _apply_repeatables(conn, scripts)


async def migrate(dsn: str, directory: Path, repeatable: Path | None = None) -> list[str]:
    """Create the database if needed, apply every pending migration of `directory`, then every
    changed script of `repeatable`; returns the versions, then the script file names."""
    await ensure_database(dsn)
    conn = await _connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            return await _migrate_locked(conn, directory, repeatable)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
