"""The migration runner on throwaway databases: idempotent, concurrent-safe, tamper-evident."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from common.storage.migrations import MigrationError, drop_database, migrate
from tests.conftest import PG

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def scratch_dsn() -> object:
    dsn = f"{PG}/migrations_test_{uuid.uuid4().hex[:10]}"
    yield dsn
    await drop_database(dsn)


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


async def test_migrate_creates_the_database_and_reruns_as_a_no_op(
    scratch_dsn: str, tmp_path: Path
) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")
    assert await migrate(scratch_dsn, tmp_path) == ["0001_a", "0002_b"]
    assert await migrate(scratch_dsn, tmp_path) == []
    _write(tmp_path, "0003_c.sql", "CREATE TABLE c (id int);")
    assert await migrate(scratch_dsn, tmp_path) == ["0003_c"]


async def test_replicas_migrating_at_once_apply_each_file_once(
    scratch_dsn: str, tmp_path: Path
) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    results = await asyncio.gather(*(migrate(scratch_dsn, tmp_path) for _ in range(5)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 1]


async def test_a_changed_applied_migration_is_refused(scratch_dsn: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    await migrate(scratch_dsn, tmp_path)
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id bigint);")
    with pytest.raises(MigrationError, match="0001_a was changed"):
        await migrate(scratch_dsn, tmp_path)


async def test_a_failing_migration_leaves_nothing_half_done(
    scratch_dsn: str, tmp_path: Path
) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int); CREATE TABLE a (id int);")
    with pytest.raises(asyncpg.DuplicateTableError):
        await migrate(scratch_dsn, tmp_path)
    conn = await asyncpg.connect(scratch_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('a')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


def test_migrate_command_runs_the_auth_migrations(scratch_dsn: str) -> None:
    env = {"AUTH_DATABASE_URL": scratch_dsn}
    # The versioned migrations and the function files (auth_service/store/sql/).
    count = len(list((ROOT / "migrations" / "auth").glob("*.sql")))
    count += len(list((ROOT / "auth_service" / "store" / "sql").glob("*.sql")))
    for expected in (f"{count} migration(s) applied", "0 migration(s) applied"):
        done = subprocess.run(
            [sys.executable, "-m", "auth_service", "migrate"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AUTH_GRPC_ADDR", "nonsense"), ("AUTH_DATABASE_URL", "mysql://x"), ("REDIS_URL", "x")],
)
def test_a_bad_setting_fails_the_start_naming_the_variable(variable: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auth_service"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert variable in done.stderr


def test_create_admin_needs_a_password() -> None:
    env = dict(os.environ)
    env.pop("AUTH_ADMIN_PASSWORD", None)
    done = subprocess.run(
        [sys.executable, "-m", "auth_service", "create-admin", "--email", "a@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "AUTH_ADMIN_PASSWORD" in done.stderr
