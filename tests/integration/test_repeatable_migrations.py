"""The server-side functions as repeatable scripts (<service>/store/sql/): a fresh
database and one deployed before they were files end alike; an edited file is applied again,
and only it; replicas migrating at once do not fail; a broken file changes nothing."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from common.storage.migrations import MigrationError, drop_database, migrate
from tests.conftest import PG
from tests.fixtures.auth import AUTH_FUNCTIONS, AUTH_MIGRATIONS
from tests.fixtures.loyalty import LOYALTY_FUNCTIONS, LOYALTY_MIGRATIONS

FILES = sorted(p.name for p in LOYALTY_FUNCTIONS.glob("*.sql"))
VERSIONS = sorted(p.stem for p in LOYALTY_MIGRATIONS.glob("*.sql"))

# What a database's schema is, as catalog rows to compare (the month partitions included).
SCHEMA = {
    "functions": "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p"
    " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
    "columns": "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
    " column_default FROM information_schema.columns WHERE table_schema = 'public'",
    "types": "SELECT udt_name, attribute_name, ordinal_position, data_type"
    " FROM information_schema.attributes WHERE udt_schema = 'public'",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)"
    " FROM pg_trigger WHERE NOT tgisinternal",
    "versions": "SELECT version FROM schema_migrations",
    "scripts": "SELECT name, checksum FROM schema_repeatables",
}

Database = Callable[[], Awaitable[str]]


@pytest.fixture
async def new_database() -> AsyncIterator[Database]:
    """Names of databases (created by the first migrate) that are dropped after the test."""
    names: list[str] = []

    async def name() -> str:
        names.append(f"{PG}/repeatables_test_{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield name
    for dsn in names:
        await drop_database(dsn)


async def _fetch(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return sorted((tuple(row) for row in await conn.fetch(query, *args)), key=repr)
    finally:
        await conn.close()


async def _schema(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: await _fetch(dsn, query) for name, query in SCHEMA.items()}


async def _definition(dsn: str, function: str) -> str:
    [(text,)] = await _fetch(dsn, "SELECT pg_get_functiondef($1::regproc)", function)
    return str(text)


async def _applied_at(dsn: str) -> dict[str, Any]:
    return dict(await _fetch(dsn, "SELECT name, applied_at FROM schema_repeatables"))


def _copy_of_the_functions(tmp_path: Path) -> Path:
    copy = tmp_path / "sql"
    shutil.copytree(LOYALTY_FUNCTIONS, copy)
    return copy


def _edit(directory: Path, name: str, old: str, new: str) -> None:
    path = directory / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_a_fresh_database_and_one_deployed_before_the_files_end_alike(
    new_database: Database,
) -> None:
    fresh, deployed = await new_database(), await new_database()
    assert await migrate(fresh, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS) == VERSIONS + FILES
    # As every database deployed so far looks: the functions came from migration 0004 only.
    assert await migrate(deployed, LOYALTY_MIGRATIONS) == VERSIONS
    assert await migrate(deployed, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS) == FILES

    fresh_schema, deployed_schema = await _schema(fresh), await _schema(deployed)
    assert fresh_schema.keys() == deployed_schema.keys()
    for part, rows in fresh_schema.items():
        assert rows, part
        assert rows == deployed_schema[part], part


@pytest.mark.parametrize(
    ("migrations", "functions"),
    [(LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS), (AUTH_MIGRATIONS, AUTH_FUNCTIONS)],
    ids=["loyalty", "auth"],
)
async def test_every_server_side_function_is_one_file_named_after_it(
    new_database: Database, migrations: Path, functions: Path
) -> None:
    dsn = await new_database()
    await migrate(dsn, migrations, functions)
    # One row per name: a signature changed by CREATE OR REPLACE alone leaves an overload.
    names = [row[0] for row in await _fetch(dsn, SCHEMA["functions"])]
    declared = {}
    for path in functions.glob("*.sql"):  # noqa: ASYNC240 (a test, a few small files)
        [function] = re.findall(r"(?im)^CREATE OR REPLACE FUNCTION (\w+)\(", path.read_text())
        declared[re.sub(r"^\d+_", "", path.stem)] = function
    assert all(stem == function for stem, function in declared.items()), declared
    assert sorted(names) == sorted(declared)


async def test_an_edited_file_is_applied_again_and_alone(
    new_database: Database, tmp_path: Path
) -> None:
    dsn, functions = await new_database(), _copy_of_the_functions(tmp_path)
    await migrate(dsn, LOYALTY_MIGRATIONS, functions)
    before = await _applied_at(dsn)
    assert await migrate(dsn, LOYALTY_MIGRATIONS, functions) == []

    # Rounding down instead of half-up: 10% of 1005 is 100, no longer 101.
    _edit(
        functions, "loyalty_discount.sql", "(p_base * p_value + 50) / 100", "p_base * p_value / 100"
    )
    runs = await asyncio.gather(*(migrate(dsn, LOYALTY_MIGRATIONS, functions) for _ in range(3)))
    assert sorted(runs) == [[], [], ["loyalty_discount.sql"]]
    [(discount,)] = await _fetch(dsn, "SELECT loyalty_discount(1005, 'PERCENT_OFF', 10, NULL)")
    assert discount == 100

    after = await _applied_at(dsn)
    assert after["loyalty_discount.sql"] > before["loyalty_discount.sql"]
    assert {n: t for n, t in after.items() if n != "loyalty_discount.sql"} == {
        n: t for n, t in before.items() if n != "loyalty_discount.sql"
    }
    assert await migrate(dsn, LOYALTY_MIGRATIONS, functions) == []


async def test_replicas_migrating_a_new_database_at_once_apply_everything_once(
    new_database: Database,
) -> None:
    dsn = await new_database()
    runs = await asyncio.gather(
        *(migrate(dsn, LOYALTY_MIGRATIONS, LOYALTY_FUNCTIONS) for _ in range(3))
    )
    assert sorted(runs) == [[], [], VERSIONS + FILES]


async def test_a_broken_file_fails_naming_itself_and_keeps_the_running_body(
    new_database: Database, tmp_path: Path
) -> None:
    dsn, functions = await new_database(), _copy_of_the_functions(tmp_path)
    await migrate(dsn, LOYALTY_MIGRATIONS, functions)
    running = await _definition(dsn, "loyalty_give_back")
    _edit(functions, "loyalty_give_back.sql", "UPDATE promo_code_slots s", "UPDATE no_such_table s")
    with pytest.raises(asyncpg.UndefinedTableError) as failure:
        await migrate(dsn, LOYALTY_MIGRATIONS, functions)
    assert "loyalty_give_back.sql" in "".join(failure.value.__notes__)
    assert await _definition(dsn, "loyalty_give_back") == running
    _edit(functions, "loyalty_give_back.sql", "UPDATE no_such_table s", "UPDATE promo_code_slots s")
    assert await migrate(dsn, LOYALTY_MIGRATIONS, functions) == []


async def test_a_missing_directory_of_scripts_fails(new_database: Database, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="no directory of repeatable scripts"):
        await migrate(await new_database(), LOYALTY_MIGRATIONS, tmp_path / "absent")


async def test_a_file_taken_away_and_put_back_is_applied_again(
    new_database: Database, tmp_path: Path
) -> None:
    dsn, functions = await new_database(), _copy_of_the_functions(tmp_path)
    await migrate(dsn, LOYALTY_MIGRATIONS, functions)
    kept = (functions / "promo_code_uses.sql").read_text()
    (functions / "promo_code_uses.sql").unlink()
    assert await migrate(dsn, LOYALTY_MIGRATIONS, functions) == []
    # Meanwhile a versioned migration dropped it (the only way a function goes).
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP FUNCTION promo_code_uses(text)")
    finally:
        await conn.close()
    (functions / "promo_code_uses.sql").write_text(kept)
    assert await migrate(dsn, LOYALTY_MIGRATIONS, functions) == ["promo_code_uses.sql"]


async def test_older_code_leaves_the_functions_of_a_newer_schema_alone(
    new_database: Database, tmp_path: Path
) -> None:
    dsn, newer = await new_database(), tmp_path / "newer"
    shutil.copytree(LOYALTY_MIGRATIONS, newer)
    (newer / "0099_next.sql").write_text("CREATE TABLE next_release (id int);")
    await migrate(dsn, newer, LOYALTY_FUNCTIONS)
    running = await _definition(dsn, "loyalty_discount")

    older = _copy_of_the_functions(tmp_path)
    _edit(older, "loyalty_discount.sql", "(p_base * p_value + 50) / 100", "p_base * p_value / 100")
    assert await migrate(dsn, LOYALTY_MIGRATIONS, older) == []
    assert await _definition(dsn, "loyalty_discount") == running


async def test_the_migrate_command_applies_the_function_files(new_database: Database) -> None:
    dsn = await new_database()
    for expected in (len(VERSIONS) + len(FILES), 0):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "loyalty_service", "migrate"],
            env={**os.environ, "LOYALTY_DATABASE_URL": dsn},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"loyalty: {expected} migration(s) applied" in done.stdout
