"""schemathesis against the gateway's own /openapi.json, with a user's token and an admin's:
positive and negative cases for every operation, and it must find nothing."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.fixtures.fuzz import FuzzServers

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
# Cases per operation in the fuzzing phase, beside the examples and coverage phases.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
_SUMMARY = re.compile(r"Test cases:\s*\n?\s*([\d,]+) generated")
CASES: dict[str, int] = {}


async def _schemathesis(url: str, token: str, report: Path, *extra: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        *extra,
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "12",
        # One worker: hypothesis's lambda descriptions trip CPython 3.11's AST recursion
        # check when two threads generate at once.
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=report,  # where it keeps its cache, out of the work tree
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("who", ["user", "admin"])
async def test_schemathesis_finds_nothing(
    gateway_url: str, fuzz_servers: FuzzServers, who: str, tmp_path: Path
) -> None:
    if who == "admin":
        # The admin's own DeleteAccount would end the run's admin session half-way.
        extra = ("--exclude-operation-id", "AuthService.DeleteAccount")
        code, output = await _schemathesis(
            gateway_url, fuzz_servers.admin.access_token, tmp_path, *extra
        )
    else:
        code, output = await _schemathesis(
            gateway_url, fuzz_servers.auth.token_for().access_token, tmp_path
        )
    assert code == 0, output
    found = _SUMMARY.search(output)
    assert found is not None, output
    CASES[who] = int(found.group(1).replace(",", ""))
    print(f"schemathesis as {who}: {CASES[who]} cases")
    assert CASES[who] >= 500, output
